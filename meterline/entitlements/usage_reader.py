"""Where a decision's usage comes from: the real-time view, falling back to Postgres rollups.

`UsageReader.used` answers the period-to-date value of a meter for one customer. The view
(`meterline.view`) is the fast path; when it is not ready (flushed, restarted empty, rebuilding:
its `watermarks()` is None) the answer comes from the Postgres rollups (`meterline.usage`),
which is slower but exact. Readiness is re-checked at most once per `ready_ttl` seconds, and a
rollup answer is reused for as long (the rollups change only when the aggregator commits).
"""

from __future__ import annotations

import abc
import threading
import time
from decimal import Decimal

from meterline.catalog import Aggregation
from meterline.clock import to_ms
from meterline.entitlements.periods import Period
from meterline.ttlmap import TtlMap
from meterline.usage.model import UsageStore
from meterline.view import SyncedView, UsageView


class UsageReader(abc.ABC):
    @abc.abstractmethod
    def used(
        self, tenant_id: int, customer: str, meter: str, aggregation: Aggregation, period: Period
    ) -> Decimal:
        """The meter's value over the minutes of `period`, reservations not included."""

    def settled(
        self, tenant_id: int, customer: str, meter: str, aggregation: Aggregation, period: Period
    ) -> Decimal:
        """`used` as the system of record holds it, read now: never from the view nor from a
        cache. What a decision reads once the view itself said it is not ready (a cached
        readiness, or a value cached a moment ago, could miss usage the flush took)."""
        return self.used(tenant_id, customer, meter, aggregation, period)

    def view_ready(self) -> bool:
        """Whether the real-time view holds the counted usage (reservations rely on it)."""
        return True


class ViewUsage(UsageReader):
    """Usage from the view alone (tests with a memory view, or a view that is always ready)."""

    def __init__(self, view: UsageView) -> None:
        self._view = view

    def used(
        self, tenant_id: int, customer: str, meter: str, aggregation: Aggregation, period: Period
    ) -> Decimal:
        start, end = to_ms(period.start), to_ms(period.end)
        return self._view.usage(tenant_id, customer, meter, aggregation, start, end)


class RollupUsage(UsageReader):
    """Usage from the Postgres rollups, over the period's minutes (`meterline.view.minute_range`,
    the rule the view reads by too)."""

    def __init__(self, query: UsageStore) -> None:
        self._query = query

    def used(
        self, tenant_id: int, customer: str, meter: str, aggregation: Aggregation, period: Period
    ) -> Decimal:
        start, end = to_ms(period.start), to_ms(period.end)
        return self._query.period_value(tenant_id, customer, meter, aggregation, start, end)

    def view_ready(self) -> bool:
        return False


class FallbackUsage(UsageReader):
    """The view while it is ready, else the rollups; wraps both readers."""

    def __init__(
        self, view: SyncedView, primary: UsageReader, fallback: UsageReader, ready_ttl: float = 1.0
    ) -> None:
        self._view = view
        self._primary = primary
        self._fallback = fallback
        self._ttl = ready_ttl
        self._checked = (0.0, False)
        self._fallen: TtlMap[tuple[object, ...], Decimal] = TtlMap(ready_ttl)
        self._lock = threading.Lock()

    def view_ready(self) -> bool:
        at, ready = self._checked
        now = time.monotonic()
        if now - at < self._ttl:
            return ready
        with self._lock:
            try:
                ready = self._view.watermarks() is not None
            except Exception:
                ready = False
            self._checked = (now, ready)
        return ready

    def used(
        self, tenant_id: int, customer: str, meter: str, aggregation: Aggregation, period: Period
    ) -> Decimal:
        if self.view_ready():
            return self._primary.used(tenant_id, customer, meter, aggregation, period)
        key = (tenant_id, customer, meter, period.start, period.end)
        hit = self._fallen.get(key)
        if hit is not None:
            return hit
        value = self.settled(tenant_id, customer, meter, aggregation, period)
        self._fallen.put(key, value)
        return value

    def settled(
        self, tenant_id: int, customer: str, meter: str, aggregation: Aggregation, period: Period
    ) -> Decimal:
        return self._fallback.used(tenant_id, customer, meter, aggregation, period)
