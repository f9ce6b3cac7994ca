"""Usage series over time windows, read from the minute rollups: types and the interface.

`series()` answers `GET /v1/usage` and `meterline usage query`: the windows (minute, hour or day,
UTC) that tile [start, end) after `start` is rounded down and `end` rounded up to the window,
each with its value folded by the meter's aggregation and its event count, zero-filled, plus the
total over the whole range. Without a customer the figures are the tenant's totals over all its
customers: sums for sum and count, the largest value for max, and for latest the sum of each
customer's latest value (e.g. seats in use across customers).

`period_value()` answers a period's usage for limits, by the rule every reader of usage shares
(`meterline.view.model.minute_range`): the minutes from the one holding the period's start up
to, not including, the one holding its end. `fold_ranges()` is the same fold over several
minute ranges, which the Redis view reads for the parts of a period older than its keys.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from meterline.catalog.aggregation import fold
from meterline.catalog.model import Aggregation
from meterline.errors import FieldError, ValidationFailed
from meterline.values import json_number
from meterline.view.model import minute_range

Window = Literal["minute", "hour", "day"]
WINDOWS: dict[str, timedelta] = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
MAX_POINTS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class UsagePoint:
    start: datetime
    end: datetime
    value: Decimal
    count: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "value": json_number(self.value),
            "count": self.count,
        }


@dataclass(frozen=True, slots=True)
class UsageSeries:
    customer: str | None
    meter: str
    window: str
    points: tuple[UsagePoint, ...]
    total: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "meter": self.meter,
            "window": self.window,
            "series": [p.as_dict() for p in self.points],
            "total": json_number(self.total),
        }


class UsageStore(abc.ABC):
    """Reads of the rollups. Raises `ValidationFailed` (422) for a bad range or window."""

    @abc.abstractmethod
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
        """The meter's usage per window over [start, end); see the module docstring."""

    @abc.abstractmethod
    def fold_ranges(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        ranges: Sequence[tuple[int, int]],
    ) -> tuple[Decimal, int] | None:
        """(value, latest_ms) of one customer's minute buckets inside any of the half-open
        [lo, hi) ranges (epoch ms), folded by `aggregation`; `None` when there is none."""

    def period_value(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        start_ms: int,
        end_ms: int,
    ) -> Decimal:
        """The meter's value over the period [start, end) by the shared minute rule."""
        found = self.fold_ranges(
            tenant_id, customer, meter, aggregation, [minute_range(start_ms, end_ms)]
        )
        return fold(aggregation, [] if found is None else [found])


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def aligned_range(start: datetime, end: datetime, window: str) -> tuple[datetime, datetime]:
    """[start, end) widened to whole windows; raises ValidationFailed listing every problem."""
    errors: list[FieldError] = []
    if window not in WINDOWS:
        errors.append(FieldError("window", "must be one of minute, hour, day"))
    for name, when in (("from", start), ("to", end)):
        if when.tzinfo is None:
            errors.append(FieldError(name, "must carry a time zone (e.g. Z)"))
    if not errors and end <= start:
        errors.append(FieldError("to", "must be after `from`"))
    if errors:
        raise ValidationFailed(errors)
    step = WINDOWS[window]
    lo = start - ((start - _EPOCH) % step)
    hi = end + (-(end - _EPOCH) % step)
    if (hi - lo) / step > MAX_POINTS:
        raise ValidationFailed(
            [FieldError("window", f"more than {MAX_POINTS} windows: use a larger window")]
        )
    return lo, hi


def dense(
    lo: datetime, hi: datetime, window: str, found: dict[datetime, tuple[Decimal, int]]
) -> tuple[UsagePoint, ...]:
    """Every window from lo to hi, zero where `found` has none."""
    step = WINDOWS[window]
    points = []
    cur = lo
    while cur < hi:
        value, count = found.get(cur, (Decimal(0), 0))
        points.append(UsagePoint(cur, cur + step, value, count))
        cur += step
    return tuple(points)
