"""The real-time usage view: its value types, its interface, and the time arithmetic it shares.

The view answers two questions on the apps' request path, both from Redis in production:
usage of a (tenant, customer, meter) over a period, and usage in the last N minutes, both at
minute resolution. It also holds pending reservations, so an entitlement check can grant usage
that the pipeline has not counted yet without ever granting past a limit.

The view is derived state. Every number in it comes from the Postgres rollups, either as a
batch's delta applied after the batch's commit or by a rebuild from the rollups.

The period rule, shared by every reader of usage (`minute_range`): events are counted by the
minute that holds them (the rollups' bucket), and a period [start, end) counts the minutes from
the one holding `start` up to, not including, the one holding `end`. A boundary inside a minute
is thereby moved down to that minute's start, so consecutive periods tile time exactly. Usage
reserved at `now` is attributed to `now` clamped into those minutes (`attributed_ms`), and the
event that carries it must be published with that timestamp: it is then counted in the period
it was checked against, even in the last seconds of a period that ends inside a minute.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Protocol

from meterline.catalog.model import Aggregation
from meterline.errors import Unavailable

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Delta:
    """The contribution of one batch to one (tenant, customer, meter, minute).

    `value` is already folded with the meter's aggregation: the sum of values (sum), the number
    of events (count), the largest value (max), or the value of the event with the latest event
    time (latest; ties broken by the larger value). `latest_ms` is the latest event time in it.
    Quantities are exact decimals (`meterline.values`), here and in every reader of the view.
    """

    tenant_id: int
    customer: str
    meter: str
    aggregation: Aggregation
    minute_ms: int
    value: Decimal
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
    """The answer of `reserve`: `used` counts usage plus pending reservations, before this one;
    `at_ms` is the instant the reserved usage is attributed to (see `attributed_ms`)."""

    granted: bool
    used: Decimal
    pending: Decimal
    at_ms: int


@dataclass(frozen=True, slots=True)
class ReserveAsk:
    """The arguments of one `reserve` (without `counted`), for `reserve_many`."""

    tenant_id: int
    customer: str
    meter: str
    event_id: str
    amount: Decimal
    limit: Decimal | None
    start_ms: int
    end_ms: int
    at_ms: int


class ViewNotReady(Unavailable):
    """The view is empty (flushed, restarted) or being rebuilt: it cannot decide a limit now.
    `pending` is the period's pending reservations, which survive both."""

    def __init__(
        self, pending: Decimal = Decimal(0), why: str = "the usage view is empty or being rebuilt"
    ) -> None:
        super().__init__(f"{why}; retry shortly", 1)
        self.pending = pending


class IdHeld:
    """The outcome of a guarded `reserve_many` ask whose id the guard holds: nothing reserved."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "IdHeld()"


HELD = IdHeld()


class IdGuard(abc.ABC):
    """Another store of event ids (ingest's dedupe store) that `reserve_many` asks first: an
    ask whose id it holds reserves nothing (`HELD`). A Redis view asks it inside each
    reservation's own script when the guard gives `script` (one round trip for both)."""

    @abc.abstractmethod
    def held_many(self, ids: Sequence[tuple[int, str]]) -> list[bool]:
        """Whether each (tenant, event_id) is held, in order (a failed store: not held)."""

    def script(self) -> str | None:
        """Lua defining `guard_held(head, id)` (true iff held), run by a Redis view in each
        reservation's script with `head(tenant_id)` as a declared key; None: ask `held_many`."""
        return None

    def head(self, tenant_id: int) -> str:
        raise NotImplementedError


Ranges = Sequence[tuple[int, int]]


class Archive(Protocol):
    """Settled usage read from the system of record (`meterline.usage.UsageStore`)."""

    def fold_ranges(
        self, tenant_id: int, customer: str, meter: str, aggregation: Aggregation, ranges: Ranges
    ) -> tuple[Decimal, int] | None:
        """(value, latest_ms) folded over the minute buckets inside any of the half-open
        [lo, hi) ranges (epoch ms, minute-aligned); `None` when there is none."""


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
    ) -> Decimal:
        """The meter's value over the minutes of [start, end) (`minute_range`); 0 without usage."""

    @abc.abstractmethod
    def recent(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        minutes: int,
        now_ms: int,
    ) -> Decimal:
        """The value over the last `minutes` minute buckets, the one holding `now_ms` included."""

    @abc.abstractmethod
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
        """Atomically: used = usage over the period's minutes + pending reservations attributed
        to them; grant iff `used + amount <= limit` (`None` is unlimited) and, when granted,
        hold `amount` pending under `event_id`, attributed to `attributed_ms(at_ms)` (the
        instant its event carries), until the event is counted or released: a reservation
        never lapses while its event waits to be counted. Reserving an `event_id` that is
        already pending (or already counted) grants again and adds nothing.

        Readiness is part of the same atomic step. While the view is empty or rebuilding it
        raises `ViewNotReady` (503) when `counted` is None, so no grant is ever made against a
        partial view alone; with `counted` (what Postgres holds: the caller's rollups and the
        grants Redis does not hold) it decides against `counted` and the pending reservations
        Redis holds, instead of the partial view."""

    def reserve_many(
        self, asks: Sequence[ReserveAsk], guard: IdGuard | None = None
    ) -> list[Reservation | IdHeld | Exception]:
        """`reserve` of each ask (without `counted`), in order, each its own atomic step; an
        ask's error (`ViewNotReady`, a Redis error) is its item, the others still decided. A
        view that can sends them together (Redis: one pipeline, one round trip). With `guard`,
        an ask whose id the guard holds is `HELD` and reserves nothing (a Redis view asks the
        guard in the same round trip when the guard has a `script`)."""
        held = guard.held_many([(a.tenant_id, a.event_id) for a in asks]) if guard else []
        answers: list[Reservation | IdHeld | Exception] = []
        for i, ask in enumerate(asks):
            if held and held[i]:
                answers.append(HELD)
                continue
            try:
                answers.append(self.reserve(*_reserve_args(ask)))
            except Exception as error:
                answers.append(error)
        return answers

    @abc.abstractmethod
    def release(self, tenant_id: int, customer: str, meter: str, event_id: str) -> None:
        """Give a pending reservation back (its event was never published); no-op if absent."""


def _reserve_args(
    a: ReserveAsk,
) -> tuple[int, str, str, str, Decimal, Decimal | None, int, int, int]:
    return (
        a.tenant_id,
        a.customer,
        a.meter,
        a.event_id,
        a.amount,
        a.limit,
        a.start_ms,
        a.end_ms,
        a.at_ms,
    )


def floor_to(ms: int, step: int) -> int:
    return ms - ms % step


def month_start(ms: int) -> int:
    d = datetime.fromtimestamp(ms / 1000, UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000)


def next_month(ms: int) -> int:
    d = datetime.fromtimestamp(month_start(ms) / 1000, UTC)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


def minute_range(start_ms: int, end_ms: int) -> tuple[int, int]:
    """The minutes a period [start, end) counts: [minute of start, minute of end)."""
    return floor_to(start_ms, MINUTE_MS), floor_to(end_ms, MINUTE_MS)


def attributed_ms(now_ms: int, start_ms: int, end_ms: int) -> int:
    """The instant usage reserved at `now` counts at: `now` clamped into the period's minutes."""
    lo, hi = minute_range(start_ms, end_ms)
    return max(lo, min(now_ms, hi - 1))


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of a period stored as one number: a whole month, day, hour, or one minute."""

    kind: str  # "month" | "day" | "hour" | "minute"
    start_ms: int

    @property
    def end_ms(self) -> int:
        if self.kind == "month":
            return next_month(self.start_ms)
        return self.start_ms + {"day": DAY_MS, "hour": HOUR_MS}.get(self.kind, MINUTE_MS)


def cover(start_ms: int, end_ms: int) -> tuple[Span, ...]:
    """The fewest month, day, hour and minute spans that tile the minutes of [start, end)."""
    return _cover(*minute_range(start_ms, end_ms))


@lru_cache(maxsize=4096)
def _cover(cur: int, end: int) -> tuple[Span, ...]:
    spans: list[Span] = []
    while cur < end:
        if cur == month_start(cur) and next_month(cur) <= end:
            span = Span("month", cur)
        elif cur % DAY_MS == 0 and cur + DAY_MS <= end:
            span = Span("day", cur)
        elif cur % HOUR_MS == 0 and cur + HOUR_MS <= end:
            span = Span("hour", cur)
        else:
            span = Span("minute", cur)
        spans.append(span)
        cur = span.end_ms
    return tuple(spans)
