"""`MemoryUsageQuery`: the same series over minute rollups held in memory (unit tests)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from meterline.catalog.aggregation import across, fold, merge
from meterline.catalog.model import Aggregation
from meterline.clock import to_ms
from meterline.usage.model import (
    WINDOWS,
    UsageSeries,
    UsageStore,
    aligned_range,
    dense,
)

Bucket = tuple[Decimal, int, int]  # (value, count, latest_ms)


class MemoryUsageQuery(UsageStore):
    def __init__(self) -> None:
        self._rows: dict[tuple[int, str, str, datetime], Bucket] = {}
        self._lock = threading.Lock()

    def add(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        minute: datetime,
        value: Decimal,
        count: int,
        latest_ms: int,
    ) -> None:
        """Merge one minute's delta, as the aggregator's rollup upsert does."""
        key = (tenant_id, customer, meter, minute)
        with self._lock:
            old = self._rows.get(key)
            v, ts = merge(
                aggregation, None if old is None else (old[0], old[2]), (value, latest_ms)
            )
            self._rows[key] = (v, count + (old[1] if old else 0), ts)

    def series(
        self,
        tenant_id: int,
        customer: str | None,
        meter: str,
        aggregation: Aggregation,
        start: datetime,
        end: datetime,
        window: str,
    ) -> UsageSeries:
        lo, hi = aligned_range(start, end, window)
        step = WINDOWS[window]
        per: dict[tuple[str, datetime], list[Bucket]] = defaultdict(list)
        whole: dict[str, list[Bucket]] = defaultdict(list)
        with self._lock:
            for (t, c, m, minute), b in self._rows.items():
                wanted = customer is None or c == customer
                if wanted and t == tenant_id and m == meter and lo <= minute < hi:
                    w = lo + ((minute - lo) // step) * step
                    per[(c, w)].append(b)
                    whole[c].append(b)
        found: dict[datetime, tuple[Decimal, int]] = {}
        for (_, w), buckets in per.items():
            v, n = _fold(aggregation, buckets)
            old_v, old_n = found.get(w, (None, 0))
            found[w] = (across(aggregation, old_v, v), old_n + n)
        total: Decimal | None = None
        for buckets in whole.values():
            total = across(aggregation, total, _fold(aggregation, buckets)[0])
        return UsageSeries(
            customer, meter, window, dense(lo, hi, window, found), total or Decimal(0)
        )

    def fold_ranges(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        ranges: Sequence[tuple[int, int]],
    ) -> tuple[Decimal, int] | None:
        with self._lock:
            buckets = [
                b
                for (t, c, m, minute), b in self._rows.items()
                if (t, c, m) == (tenant_id, customer, meter)
                and any(lo <= to_ms(minute) < hi for lo, hi in ranges)
            ]
        if not buckets:
            return None
        return _fold(aggregation, buckets)[0], max(b[2] for b in buckets)


def _fold(aggregation: Aggregation, buckets: list[Bucket]) -> tuple[Decimal, int]:
    """(value, count) of one series' buckets."""
    return fold(aggregation, ((b[0], b[2]) for b in buckets)), sum(b[1] for b in buckets)
