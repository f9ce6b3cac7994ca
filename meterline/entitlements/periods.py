"""Usage periods: when a metered limit's count starts again from zero.

Calendar periods are UTC: a day starts at midnight, a week on Monday at midnight, a month on its
first day at midnight. A billing period comes from the customer's subscription
(`current_period_start/end`); when `now` has run past the stored end (a renewal webhook not yet
received), the period is rolled forward the way Stripe renews: by whole months from the start's
day of month (clamped to short months: Jan 31 -> Feb 28/29 -> Mar 31), or by the stored length
when it is not a whole number of months (daily and weekly prices). Every period is half-open:
`start <= t < end`.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from meterline.catalog import ResetPeriod

MAX_MONTHS_PER_PERIOD = 12


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end

    def as_dict(self) -> dict[str, str]:
        start, end = _bounds_text(self.start, self.end)
        return {"start": start, "end": end}


@lru_cache(maxsize=4096)
def _bounds_text(start: datetime, end: datetime) -> tuple[str, str]:
    """A period's bounds as text: every decision's body holds them, and they repeat."""
    return iso(start), iso(end)


def iso(when: datetime) -> str:
    """RFC 3339 in UTC with a `Z` suffix, to the second (milliseconds when present)."""
    when = when.astimezone(UTC)
    text = when.isoformat(timespec="milliseconds" if when.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` moved by `months` calendar months, its day clamped to the target month's end."""
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(index, 12)
    day = min(anchor.day, calendar.monthrange(year, month + 1)[1])
    return anchor.replace(year=year, month=month + 1, day=day)


def calendar_period(reset: ResetPeriod, now: datetime) -> Period:
    """The UTC day, ISO week (Monday start) or month holding `now`.

    `billing_period` without a subscription period falls back to the calendar month.
    """
    now = now.astimezone(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if reset is ResetPeriod.DAY:
        return Period(midnight, midnight + timedelta(days=1))
    if reset is ResetPeriod.WEEK:
        monday = midnight - timedelta(days=midnight.weekday())
        return Period(monday, monday + timedelta(days=7))
    first = midnight.replace(day=1)
    return Period(first, add_months(first, 1))


def billing_period(start: datetime, end: datetime, now: datetime) -> Period:
    """The billing period holding `now`, from a stored period `[start, end)` of the same cycle.

    Raises ValueError when `end <= start`.
    """
    if end <= start:
        raise ValueError("a billing period must end after it starts")
    months = _whole_months(start, end)
    if months is None:
        return _step_fixed(start, end - start, now)
    return _step_months(start, months, now)


def _whole_months(start: datetime, end: datetime) -> int | None:
    for months in range(1, MAX_MONTHS_PER_PERIOD + 1):
        candidate = add_months(start, months)
        if candidate == end:
            return months
        if candidate > end:
            return None
    return None


def _step_fixed(start: datetime, length: timedelta, now: datetime) -> Period:
    steps = (now - start) // length
    begin = start + steps * length
    return Period(begin, begin + length)


def _step_months(anchor: datetime, months: int, now: datetime) -> Period:
    elapsed = (now.year - anchor.year) * 12 + (now.month - anchor.month)
    k = elapsed // months
    begin = add_months(anchor, k * months)
    while begin > now:
        k -= 1
        begin = add_months(anchor, k * months)
    while add_months(anchor, (k + 1) * months) <= now:
        k += 1
    begin = add_months(anchor, k * months)
    return Period(begin, add_months(anchor, (k + 1) * months))
