"""`MemoryUsageView`: the view in process memory, for unit tests and tools without Redis.

Same contract as the Redis view, with one simplification: minute buckets never expire, so it
needs no archive for old parts of a period.
"""

from __future__ import annotations

import secrets
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from meterline.catalog.aggregation import fold, merge
from meterline.catalog.model import Aggregation
from meterline.clock import Clock, SystemClock
from meterline.values import exact_sum
from meterline.view.model import (
    MINUTE_MS,
    Delta,
    Reservation,
    ReservationKey,
    ViewNotReady,
    attributed_ms,
    floor_to,
    minute_range,
)
from meterline.view.sync import ApplyOutcome, Gate, PendingReservation, SyncedView
from meterline.view.touched import MemoryTouched

Series = tuple[int, str, str]  # (tenant_id, customer, meter)
Bucket = tuple[Decimal, int]  # (value, latest_ms)


@dataclass
class _Pending:
    amount: Decimal
    at_ms: int


@dataclass
class _Meter:
    minutes: dict[int, Bucket] = field(default_factory=dict)
    pending: dict[str, _Pending] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)  # event_id -> forget after (ms)


class MemoryUsageView(SyncedView):
    def __init__(
        self,
        clock: Clock | None = None,
        counted_ttl_s: int = 3600,
        touched: MemoryTouched | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._touched = touched
        self._counted_ttl_ms = counted_ttl_s * 1000
        self._series: dict[Series, _Meter] = defaultdict(_Meter)
        self._lock = threading.Lock()
        self._ready = True
        self._flag: str | None = None
        self._marks: dict[str, int] = {}

    def apply(
        self, deltas: Sequence[Delta], counted_reservations: Sequence[ReservationKey]
    ) -> None:
        with self._lock:
            self._add(deltas, counted_reservations)

    def apply_gated(
        self, gate: Gate, deltas: Sequence[Delta], counted: Sequence[ReservationKey]
    ) -> ApplyOutcome:
        with self._lock:
            if self._flag is not None:
                return ApplyOutcome.REBUILDING
            if not self._ready:
                return ApplyOutcome.EMPTY
            mark = self._marks.get(gate.stream)
            if mark is not None and mark >= gate.next_offset:
                self._add([], counted)
                return ApplyOutcome.SKIPPED
            if mark != gate.prev_offset:
                return ApplyOutcome.GAP
            self._marks[gate.stream] = gate.next_offset
            self._add(deltas, counted)
            return ApplyOutcome.APPLIED

    def _add(self, deltas: Sequence[Delta], counted_reservations: Sequence[ReservationKey]) -> None:
        if self._touched is not None and deltas:
            self._touched.touch((d.tenant_id, d.customer) for d in deltas)
        for d in deltas:
            m = self._series[(d.tenant_id, d.customer, d.meter)]
            new = (d.value, d.latest_ms)
            m.minutes[d.minute_ms] = merge(d.aggregation, m.minutes.get(d.minute_ms), new)
        forget_at = self._clock.now_ms() + self._counted_ttl_ms
        for r in counted_reservations:
            m = self._series[(r.tenant_id, r.customer, r.meter)]
            m.pending.pop(r.event_id, None)
            m.counted[r.event_id] = forget_at

    def flush(self) -> None:
        """Lose everything, as a flushed Redis does (for tests)."""
        with self._lock:
            self._series.clear()
            self._marks.clear()
            self._ready = False
            self._flag = None

    def watermarks(self) -> dict[str, int] | None:
        with self._lock:
            return dict(self._marks) if self._ready and self._flag is None else None

    def begin_rebuild(self, ttl_s: int) -> str | None:
        with self._lock:
            if self._flag is not None:
                return None
            self._flag = secrets.token_hex(8)
            self._ready = False
            self._marks.clear()
            for m in self._series.values():
                m.minutes.clear()
            return self._flag

    def extend_rebuild(self, token: str, ttl_s: int) -> bool:
        return self._flag == token

    def load(self, token: str, deltas: Sequence[Delta]) -> None:
        with self._lock:
            if self._flag != token:
                raise RuntimeError("rebuild lost its flag while loading")
            self._add(deltas, [])

    def finish_rebuild(self, token: str, watermarks: Mapping[str, int]) -> bool:
        with self._lock:
            if self._flag != token:
                return False
            self._marks = dict(watermarks)
            self._ready, self._flag = True, None
            return True

    def pending_reservations(self) -> list[ReservationKey]:
        with self._lock:
            return [
                ReservationKey(*key, event_id)
                for key, m in self._series.items()
                for event_id in m.pending
            ]

    def held_ids(self, tenant_id: int, customer: str, meter: str) -> set[str]:
        with self._lock:
            m = self._series.get((tenant_id, customer, meter))
            return set() if m is None else set(m.pending)

    def restore_reservations(self, pending: Sequence[PendingReservation]) -> None:
        with self._lock:
            for p in pending:
                m = self._series[(p.key.tenant_id, p.key.customer, p.key.meter)]
                m.pending.setdefault(p.key.event_id, _Pending(p.amount, p.at_ms))

    def remove_reservations(self, keys: Sequence[ReservationKey]) -> None:
        with self._lock:
            for k in keys:
                m = self._series.get((k.tenant_id, k.customer, k.meter))
                if m is not None:
                    m.pending.pop(k.event_id, None)

    def usage(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        start_ms: int,
        end_ms: int,
    ) -> Decimal:
        with self._lock:
            return self._usage((tenant_id, customer, meter), aggregation, start_ms, end_ms)

    def _usage(self, key: Series, aggregation: Aggregation, start_ms: int, end_ms: int) -> Decimal:
        m = self._series.get(key)
        if m is None:
            return Decimal(0)
        lo, hi = minute_range(start_ms, end_ms)
        return fold(aggregation, (b for t, b in m.minutes.items() if lo <= t < hi))

    def recent(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        minutes: int,
        now_ms: int,
    ) -> Decimal:
        hi = floor_to(now_ms, MINUTE_MS)
        lo = hi - (minutes - 1) * MINUTE_MS
        with self._lock:
            m = self._series.get((tenant_id, customer, meter))
            if m is None:
                return Decimal(0)
            return fold(aggregation, (b for t, b in m.minutes.items() if lo <= t <= hi))

    def reserve(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        event_id: str,
        amount: Decimal,
        limit: Decimal | None,
        start_ms: int,
        end_ms: int,
        at_ms: int,
        counted: Decimal | None = None,
    ) -> Reservation:
        now = self._clock.now_ms()
        key = (tenant_id, customer, meter)
        at = attributed_ms(at_ms, start_ms, end_ms)
        lo, hi = minute_range(start_ms, end_ms)
        with self._lock:
            m = self._series[key]
            _expire(m, now)
            pending = exact_sum(p.amount for p in m.pending.values() if lo <= p.at_ms < hi)
            if self._ready and self._flag is None:
                used = self._usage(key, Aggregation.SUM, start_ms, end_ms)
            elif counted is None:
                raise ViewNotReady(pending)
            else:
                used = counted
            held = exact_sum((used, pending))
            if event_id in m.pending or event_id in m.counted:
                return Reservation(True, held, pending, at)
            granted = limit is None or exact_sum((held, amount)) <= limit
            if granted:
                m.pending[event_id] = _Pending(amount, at)
            return Reservation(granted, held, pending, at)

    def release(self, tenant_id: int, customer: str, meter: str, event_id: str) -> None:
        with self._lock:
            m = self._series.get((tenant_id, customer, meter))
            if m is not None:
                m.pending.pop(event_id, None)


def _expire(m: _Meter, now_ms: int) -> None:
    for event_id in [e for e, t in m.counted.items() if t <= now_ms]:
        del m.counted[event_id]
