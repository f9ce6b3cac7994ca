"""The oracle's customer stories, drawn from a seeded RNG, and what their invoices must bill.

A story is one customer across the end of its first billing period: an anchor at a random
second (so periods end off the hour), a plan with one of the catalog's pricing kinds, events
around the period end (some a few hours late, some a month late, all reaching Stripe
before the invoice of their period is finalized), and at most one plan change or
cancellation at a random second (a quarter of them in the hour that holds the period end,
before it), whose webhook may come hours or a day late. Expectations
follow the contract alone: usage of [ceil_minute(start), ceil_minute(end)) bills on a
period's invoice; a change bills the minute that holds it on the old plan; an hour pushed
whole before its change was learned, and too old to cancel by then (Stripe cancels within
24 h of receipt; the reporter keeps an hour's margin), stays on the old plan.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tests.reporter.oracle.calculator import ceil_minute, cents, units_between

PRICES = {
    "unit": {"unit_amount_decimal": "0.5"},
    "incl": {"included": 80, "unit_amount_decimal": "0.35"},
    "grad": {
        "included": 50,
        "tiers_mode": "graduated",
        "tiers": [
            {"up_to": 200, "unit_amount_decimal": "1"},
            {"up_to": "inf", "unit_amount_decimal": "0.25", "flat_amount_decimal": "30"},
        ],
    },
    "vol": {
        "tiers_mode": "volume",
        "tiers": [
            {"up_to": 100, "unit_amount_decimal": "0.8"},
            {"up_to": 500, "unit_amount_decimal": "0.6", "flat_amount_decimal": "10"},
            {"up_to": "inf", "unit_amount_decimal": "0.35"},
        ],
    },
    "pack": {"package": {"divide_by": 25, "round": "up", "amount_decimal": "7"}},
}
PLANS = tuple(PRICES)
HOUR = timedelta(hours=1)
BEFORE, AFTER = timedelta(hours=5), timedelta(hours=3)  # usage around the period end
GRACE = timedelta(minutes=60)  # Stripe finalizes an invoice an hour after its period
DEDUPE = timedelta(hours=23)
DELAYS = (0, 0, 0, 90, 70 * 60, 150 * 60, 26 * 3600)  # webhook delays, seconds


@dataclass
class Event:
    ts: datetime
    value: int
    received: datetime


@dataclass
class Story:
    key: str
    plan: str
    offset: timedelta  # anchor after the first customer's creation
    events: list[Event] = field(default_factory=list)
    change: tuple[str, datetime, timedelta] | None = None  # (new plan | "cancel", at, delay)
    period_start: datetime | None = None  # the first period, from Stripe
    period_end: datetime | None = None
    near_end: bool = False  # the change falls in the hour of the period end, before it

    @property
    def canceled(self) -> bool:
        return self.change is not None and self.change[0] == "cancel"

    def usage(self) -> list[tuple[datetime, int]]:
        return [(e.ts, e.value) for e in self.events]


def draw(rng: random.Random, n: int) -> list[Story]:
    """`n` stories: plans, anchors within 150 minutes at random seconds, and changes; every
    twelfth a cancellation in the hour of its period end, learned hours or a day late, with
    usage after the end in that hour (the slots a late change must net out)."""
    stories = []
    for i in range(n):
        story = Story(f"cust_{i}", rng.choice(PLANS), timedelta(seconds=rng.randrange(150 * 60)))
        roll = rng.random()
        if i % 12 == 11:
            story.change = ("cancel", datetime.min, timedelta(seconds=rng.choice(DELAYS[-2:])))
            story.near_end = True
        elif roll < 0.45:
            new = rng.choice([p for p in PLANS if p != story.plan])
            story.change = (new, datetime.min, timedelta(seconds=rng.choice(DELAYS)))
        elif roll < 0.6:
            story.change = ("cancel", datetime.min, timedelta(seconds=rng.choice(DELAYS)))
        stories.append(story)
    return stories


def add_events(rng: random.Random, story: Story, period_end: datetime, pushes: list[datetime]
               ) -> None:  # fmt: skip
    """Events and the change's moment, once the period end is known. `pushes` are the push
    times: an event of the first period reaches the ledger before the last push that comes
    before its invoice is finalized. No change falls in the hour between a period's end and
    its invoice: the emulator invoices a period when it is closed, not at its end, so a
    change then would reach back into the closed period. A plan change before a period end
    is learned before the period's invoice (or too late to cancel anything); a cancellation
    leaves no invoice, so it may be learned at any time, also after the period end within its
    own hour, once the slot after the end was pushed."""
    story.period_end = period_end
    last_push = max(p for p in pushes if p < period_end + GRACE - timedelta(minutes=1))
    start = period_end - BEFORE
    span = int((BEFORE + AFTER).total_seconds())
    for _ in range(rng.randint(4, 16)):
        ts = start + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10**6))
        late = rng.choice([timedelta(0)] * 5 + [timedelta(minutes=rng.randint(1, 150))])
        story.events.append(_event(ts, rng.randint(1, 60), ts + late, period_end, last_push))
    if rng.random() < 0.25:  # a month late: from the period's first day (Stripe keeps 35)
        assert story.period_start is not None
        ts = story.period_start + timedelta(days=rng.uniform(0.01, 1))
        received = start + timedelta(seconds=rng.randrange(int(BEFORE.total_seconds()) - 600))
        story.events.append(Event(ts, rng.randint(1, 60), received))
    if story.change is not None:
        _add_change(rng, story, start + timedelta(seconds=rng.randrange(1800, span - 1800)),
                    last_push)  # fmt: skip


def _add_change(rng: random.Random, story: Story, at: datetime, last_push: datetime) -> None:
    """The change's moment (`at`, or one in the hour of the period end for a quarter of the
    stories and those `near_end`) and when it is learned (see `add_events`)."""
    assert story.change is not None and story.period_end is not None
    kind, _, delay = story.change
    period_end = story.period_end
    hour = period_end.replace(minute=0, second=0)
    if (story.near_end or rng.random() < 0.25) and period_end - hour > timedelta(minutes=1):
        at = period_end - timedelta(seconds=rng.randrange(1, int((period_end - hour).seconds)))
        if story.near_end:  # usage after the end in the same hour
            ts = ceil_minute(period_end) + (hour + HOUR - ceil_minute(period_end)) * rng.random()
            story.events.append(Event(ts, rng.randint(1, 60), ts))
    if period_end <= at <= period_end + GRACE:  # see `add_events`
        at += GRACE + timedelta(minutes=1)
    invoiced = kind != "cancel" and at < period_end
    if invoiced and delay < DEDUPE and at + delay >= last_push:
        delay = last_push - at - timedelta(seconds=1)  # learned before the invoice
    story.change = (kind, at, max(delay, timedelta(0)))


def _event(ts: datetime, value: int, received: datetime, period_end: datetime,
           last_push: datetime) -> Event:  # fmt: skip
    if ts < ceil_minute(period_end):
        received = min(received, last_push - timedelta(seconds=1))
    return Event(ts, value, max(received, ts))


def _push_after(when: datetime, pushes: list[datetime]) -> datetime:
    return min(p for p in pushes if p >= when)


def split(story: Story, pushes: list[datetime]) -> datetime | None:
    """Where the invoice splits the usage between the old plan and the new one (or nothing,
    after a cancellation): the change's minute ceiling; but at the end of the change's slot
    (its hour, or the part of it before or after the period end) when that slot was pushed
    whole before the change was learned and its first event went to Stripe more than the
    dedupe margin before the push that learned it."""
    if story.change is None:
        return None
    _, at, delay = story.change
    minute = ceil_minute(at)
    hour = at.replace(minute=0, second=0, microsecond=0)
    edges = [ceil_minute(story.period_end)] if story.period_end else []
    slot_start = max([hour, *(b for b in edges if b <= at)])
    slot_end = min([hour + HOUR, *(b for b in edges if b > at)])
    received = [e.received for e in story.events if slot_start <= e.ts < slot_end]
    if not received or minute == slot_end:
        return minute
    first_sent = _push_after(max(slot_end, min(received)), pushes)
    learned = _push_after(at + delay, pushes)
    too_late = first_sent < learned and learned - first_sent > DEDUPE
    return slot_end if too_late else minute


def learned_after_a_later_slot(story: Story, pushes: list[datetime]) -> bool:
    """The change comes before a period end in the same hour and is learned after the slot
    after that end was pushed: every pushed slot of the hour from the change on is netted out."""
    if story.change is None or story.period_end is None:
        return False
    _, at, delay = story.change
    hour_end = at.replace(minute=0, second=0, microsecond=0) + HOUR
    pushed = [p for p in pushes if p >= hour_end]
    return (
        at < ceil_minute(story.period_end) < hour_end and bool(pushed) and at + delay > min(pushed)
    )


def moved(story: Story, pushes: list[datetime]) -> int:
    """Units billed on the old plan although they came after the change (`split_after_push`)."""
    cut = split(story, pushes)
    if cut is None or story.change is None:
        return 0
    return units_between(story.usage(), ceil_minute(story.change[1]), cut)


def lines(story: Story, pushes: list[datetime]) -> list[tuple[int, str, datetime | None,
                                                           datetime | None]]:  # fmt: skip
    """Every invoice line as (period 1 or 2, plan, start, end): usage stamped in [start, end)
    bills at that plan on that period's invoice."""
    assert story.period_end is not None
    edge = ceil_minute(story.period_end)
    cut = split(story, pushes)
    spans: list[tuple[str, datetime | None, datetime | None]] = [(story.plan, None, cut)]
    if story.change is not None and not story.canceled:
        spans.append((story.change[0], cut, None))
    out = []
    for period, (lo, hi) in ((1, (None, edge)), (2, (edge, None))):
        for plan, start, end in spans:
            a = max((x for x in (lo, start) if x is not None), default=None)
            b = min((x for x in (hi, end) if x is not None), default=None)
            if a is None or b is None or a < b:
                out.append((period, plan, a, b))
    return out


def invoice(story: Story, pushes: list[datetime], period: int) -> dict[str, int]:
    """What the period's invoice must charge per plan (lines of 0 cents left out)."""
    out: dict[str, int] = {}
    for p, plan, start, end in lines(story, pushes):
        if p == period:
            amount = cents(PRICES[plan], units_between(story.usage(), start, end))
            if amount:
                out[plan] = out.get(plan, 0) + amount
    return out
