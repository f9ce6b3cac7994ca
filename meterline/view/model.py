"""The real-time usage view: its value types, its interface, and the time arithmetic it shares.

The view answers two questions on the apps' request path, both from Redis in production:
period-to-date usage of a (tenant, customer, meter) at hour resolution, and usage in the last N
minutes at minute resolution. It also holds pending reservations, so an entitlement check can
grant usage that the pipeline has not counted yet without ever granting past a limit.

The view is derived state. Every number in it comes from the Postgres rollups, either as a
batch's delta applied after the batch's commit or by a rebuild from the rollups.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from meterline.catalog.model import Aggregation

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Delta:
    """The contribution of one batch to one (tenant, customer, meter, minute).

    `value` is already folded with the meter's aggregation: the sum of values (sum), the number
    of events (count), the largest value (max), or the value of the event with the latest event
    time (latest; ties broken by the larger value). `latest_ms` is the latest event time in it.
    """

    tenant_id: int
    customer: str
    meter: str
    aggregation: Aggregation
    minute_ms: int
    value: float
    count: int
    latest_ms: int


@dataclass(frozen=True, slots=True)
class ReservationKey:
    """A counted event that was granted through a reservation (property `meterline_reservation`)."""

    tenant_id: int
    customer: str
    meter: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer of `reserve`: `used` counts usage plus pending reservations, before this one."""

    granted: bool
    used: float
    pending: float


class UsageView(abc.ABC):
    """Period-to-date and recent usage per (tenant, customer, meter), plus pending reservations.

    Every method is safe to call from many threads and processes at once.
    """

    @abc.abstractmethod
    def apply(
        self, deltas: Sequence[Delta], counted_reservations: Sequence[ReservationKey]
    ) -> None:
        """Add a committed batch's deltas and remove the pending reservations of the counted
        events, in one atomic step: `used + pending` never counts such an event twice or zero
        times. Applying the same batch twice counts it twice (the caller ensures it does not)."""

    @abc.abstractmethod
    def usage(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        start_ms: int,
        end_ms: int,
    ) -> float:
        """The meter's value over [start, end), both rounded down to the hour; 0 without usage."""

    @abc.abstractmethod
    def recent(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        minutes: int,
        now_ms: int,
    ) -> float:
        """The value over the last `minutes` minute buckets, the one holding `now_ms` included."""

    @abc.abstractmethod
    def reserve(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        event_id: str,
        amount: float,
        limit: float | None,
        start_ms: int,
        end_ms: int,
        at_ms: int,
    ) -> Reservation:
        """Atomically: used = usage over the period + pending reservations made in it (whose
        `at_ms` falls in it); grant iff `used + amount <= limit` (`None` is unlimited) and, when
        granted, hold `amount` pending under `event_id` at `at_ms` (the event's timestamp) until
        the event is counted or released: a reservation never lapses while its event waits to
        be counted. Reserving an `event_id` that is already pending (or already counted) grants
        again and adds nothing."""

    @abc.abstractmethod
    def release(self, tenant_id: int, customer: str, meter: str, event_id: str) -> None:
        """Give a pending reservation back (its event was never published); no-op if absent."""


def floor_to(ms: int, step: int) -> int:
    return ms - ms % step


def month_start(ms: int) -> int:
    d = datetime.fromtimestamp(ms / 1000, UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000)


def next_month(ms: int) -> int:
    d = datetime.fromtimestamp(month_start(ms) / 1000, UTC)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of a period stored as one number: a whole month, a whole day, or one hour."""

    kind: str  # "month" | "day" | "hour"
    start_ms: int


def cover(start_ms: int, end_ms: int) -> list[Span]:
    """The fewest month, day and hour spans that tile [start, end) after rounding to the hour."""
    cur, end = floor_to(start_ms, HOUR_MS), floor_to(end_ms, HOUR_MS)
    spans: list[Span] = []
    while cur < end:
        if cur == month_start(cur) and next_month(cur) <= end:
            spans.append(Span("month", cur))
            cur = next_month(cur)
        elif cur % DAY_MS == 0 and cur + DAY_MS <= end:
            spans.append(Span("day", cur))
            cur += DAY_MS
        else:
            spans.append(Span("hour", cur))
            cur += HOUR_MS
    return spans


def fold(aggregation: Aggregation, values: Iterable[tuple[float, int]]) -> float:
    """Fold (value, latest_ms) pairs of disjoint buckets into one number; 0 when empty."""
    items = list(values)
    if not items:
        return 0.0
    if aggregation is Aggregation.MAX:
        return max(v for v, _ in items)
    if aggregation is Aggregation.LATEST:
        return max(items, key=lambda it: (it[1], it[0]))[0]
    return sum(v for v, _ in items)


def merge(
    aggregation: Aggregation, old: tuple[float, int] | None, new: tuple[float, int]
) -> tuple[float, int]:
    """Merge one bucket's (value, latest_ms) with a delta's; associative and commutative."""
    if old is None:
        return new
    if aggregation is Aggregation.MAX:
        return max(old[0], new[0]), max(old[1], new[1])
    if aggregation is Aggregation.LATEST:
        return max(old, new, key=lambda it: (it[1], it[0]))
    return old[0] + new[0], max(old[1], new[1])
