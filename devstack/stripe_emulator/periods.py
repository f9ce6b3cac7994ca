"""Billing-period arithmetic in UTC: the n-th boundary after a billing-cycle anchor.

Months and years keep the anchor's day of month, clamped to the month's length (an anchor on
the 31st bills on the 30th in April and the 28th or 29th in February), as Stripe does.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

FIXED = {"day": 86_400, "week": 7 * 86_400}


def boundary(anchor: int, interval: str, count: int, n: int) -> int:
    """The start of period `n` (period 0 starts at `anchor`)."""
    if interval in FIXED:
        return anchor + n * count * FIXED[interval]
    months = n * count * (12 if interval == "year" else 1)
    return _add_months(anchor, months)


def _add_months(ts: int, months: int) -> int:
    start = datetime.fromtimestamp(ts, tz=UTC)
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    moved = start.replace(year=year, month=month, day=day)
    return int(moved.timestamp())


def period(anchor: int, interval: str, count: int, n: int) -> tuple[int, int]:
    """(start, end) of period `n`."""
    return boundary(anchor, interval, count, n), boundary(anchor, interval, count, n + 1)


def index_at(anchor: int, interval: str, count: int, ts: int) -> int:
    """The period index containing `ts` (0 when `ts` is before the anchor)."""
    if ts < anchor:
        return 0
    if interval in FIXED:
        return (ts - anchor) // (count * FIXED[interval])
    n = 0
    while boundary(anchor, interval, count, n + 1) <= ts:
        n += 1
    return n
