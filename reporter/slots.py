"""Slots and identifiers: the pure arithmetic behind every push.

A *slot* is the unit we report: one hour of one customer's meter, or — when a billing-period
boundary falls inside the hour — the part before and the part after it, so each part lands in
its own invoice. Boundaries are rounded up to the minute (minute rollups cannot be split): the
minute bucket that holds a boundary belongs to the period it starts in. So the usage of a
period [start, end) is the minute buckets in [ceil_minute(start), ceil_minute(end)), and a
slot's meter event carries the slot's start as its timestamp.

The identifier of a push is deterministic in (tenant, customer, meter, slot start, revision):
the same push always has the same identifier, so a resend after a crash is recognised by
Stripe. It stays within Stripe's 100 characters whatever the customer and meter keys are.

Revision `r` of a slot is stamped `r - 1` seconds after the slot's start (`event_timestamp`),
so each correction of a last-value slot is strictly later than the one before and Stripe's
`last` bills the newest revision whatever its tie-break for equal timestamps. A slot lasts at
least a minute (boundaries are minute-ceiled), so the first 60 revisions stay inside it;
later ones share the slot's 60th second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from meterline.catalog.aggregation import RULES, Combine
from meterline.catalog.model import Aggregation

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def floor_hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def floor_minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def ceil_minute(when: datetime) -> datetime:
    floored = floor_minute(when)
    return floored if floored == when else floored + MINUTE


def slot_start(bucket: datetime, boundaries: Iterable[datetime]) -> datetime:
    """The slot a minute bucket belongs to; `boundaries` are already minute-ceiled."""
    hour = floor_hour(bucket)
    inside = [b for b in boundaries if hour < b <= bucket]
    return max(inside, default=hour)


def slot_end(start: datetime, boundaries: Iterable[datetime]) -> datetime:
    """The end of the slot at `start`: the next boundary in its hour, else the hour's end."""
    hour_end = floor_hour(start) + HOUR
    later = [b for b in boundaries if start < b < hour_end]
    return min(later, default=hour_end)


def event_timestamp(start: datetime, revision: int) -> int:
    """Unix seconds of revision `revision` (from 1) of the slot at `start`; see the module."""
    return int(start.timestamp()) + min(max(revision, 1) - 1, 59)


def identifier(tenant_id: int, customer: str, meter: str, start: datetime, revision: int) -> str:
    """`ml-<tenant>-<YYYYmmddHHMM>-<hash of customer and meter>-r<revision>` (<= 100 chars)."""
    digest = hashlib.sha256(f"{tenant_id}\x00{customer}\x00{meter}".encode()).hexdigest()[:24]
    stamp = start.astimezone(UTC).strftime("%Y%m%d%H%M")
    return f"ml-{tenant_id}-{stamp}-{digest}-r{revision}"


@dataclass(frozen=True, slots=True)
class SlotUsage:
    customer: str
    meter: str
    start: datetime
    total: Decimal
    peak: Decimal
    last: Decimal
    count: int

    def value(self, aggregation: Aggregation) -> Decimal:
        """The slot's value for a meter with this aggregation (by how it combines over time)."""
        how = RULES[aggregation].over_time
        return (
            self.peak if how is Combine.MAX else self.last if how is Combine.LATEST else self.total
        )
