"""The money oracle (reduced): seeded customer-periods with usage, late events, downgrades and
cancellations at random seconds and webhooks delayed up to hours, through Postgres, the
reporter and the Stripe emulator answering 429s and 500s. Each invoice must equal, to the
cent, what an independent calculator says from the price list and the event list alone (it
shares no code with reporter/). `METERLINE_ORACLE_CUSTOMERS` and `METERLINE_ORACLE_SEED`
scale it up."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.reporter.support import add_usage, emulator_clock, make_world, reporter_for
from tests.reporter.support import settings_for as reporter_settings
from tests.reporter.test_plan_changes import _move_to, _webhook, _with_basic

pytestmark = pytest.mark.integration
PRICES = {"power": Decimal("0.5"), "basic": Decimal("0.2")}  # cents a call, the price list
HOURS = 8
HOUR = timedelta(hours=1)
DEDUPE = timedelta(hours=23)  # Stripe cancels within 24 h of receipt; the reporter keeps 1 h


@dataclass
class Story:
    """One customer-period as the oracle sees it: events, and at most one change."""

    key: str
    events: list[tuple[datetime, int, timedelta]] = field(default_factory=list)
    change: tuple[str, datetime, timedelta] | None = None  # (downgrade|cancel, at, delay)


def _stories(rng: random.Random, keys: list[str], start: datetime) -> list[Story]:
    stories = []
    for key in keys:
        story = Story(key)
        for _ in range(rng.randint(3, 12)):
            ts = start + timedelta(seconds=rng.randrange(HOURS * 3600))
            late = rng.choice([timedelta(0)] * 4 + [timedelta(minutes=rng.randint(1, 180))])
            story.events.append((ts, rng.randint(1, 20), late))
        kind = rng.choice(["downgrade", "downgrade", "cancel", None])
        if kind is not None:
            at = start + timedelta(seconds=rng.randrange(1800, HOURS * 3600 - 1800))
            delay = rng.choice([0, 0, 90, 70 * 60, 150 * 60, 26 * 3600])
            story.change = (kind, at, timedelta(seconds=delay))
        stories.append(story)
    return stories


def _cents(units: int, price: Decimal) -> int:
    """Stripe's line amount: units times the unit price, rounded half up to the cent."""
    return int((units * price).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _push_after(when: datetime) -> datetime:
    """The first push at or after `when` (pushes run at every hh:05)."""
    push = when.replace(minute=5, second=0, microsecond=0)
    return push if push >= when else push + timedelta(hours=1)


def _split(story: Story) -> datetime | None:
    """Where the invoice splits the usage: the change, rounded up to the minute (the minute
    that holds it bills on the old plan); but when the change's hour was billed whole before
    the webhook came, and its first event went to Stripe more than the dedupe margin before
    the push that learned of the change (too late to take back), at the end of that hour."""
    if story.change is None:
        return None
    _, at, delay = story.change
    minute = at.replace(second=0) + timedelta(minutes=1) if at.second else at
    hour_end = at.replace(minute=0, second=0) + timedelta(hours=1)
    received = [ts + late for ts, _, late in story.events if hour_end - HOUR <= ts < hour_end]
    if not received or minute == hour_end:
        return minute
    first_sent = _push_after(max(hour_end, min(received)))
    learned = _push_after(at + delay)
    too_late = first_sent < learned and learned - first_sent > DEDUPE
    return hour_end if too_late else minute


def _moved(story: Story) -> int:
    """Units the invoice bills before the split although they came after the change."""
    split = _split(story)
    if split is None or story.change is None:
        return 0
    at = story.change[1]
    minute = at.replace(second=0) + timedelta(minutes=1) if at.second else at
    return sum(v for ts, v, _ in story.events if minute <= ts < split)


def _expected(story: Story) -> dict[str, int]:
    """What the invoice must charge per price: usage before the split at power's price,
    after it at basic's."""
    split = _split(story)
    before = sum(v for ts, v, _ in story.events if split is None or ts < split)
    after = sum(v for ts, v, _ in story.events if split and ts >= split)
    out = {"0.5": _cents(before, PRICES["power"])}
    if story.change is not None and story.change[0] == "downgrade":
        out["0.2"] = _cents(after, PRICES["basic"])
    return out


def test_invoices_equal_the_oracle_to_the_cent(pg_conninfo, stripe_emulator, stripe_client):
    n = int(os.environ.get("METERLINE_ORACLE_CUSTOMERS", "8"))
    rng = random.Random(int(os.environ.get("METERLINE_ORACLE_SEED", "45")))
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=n)
    basic_price = _with_basic(world, stripe_client)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, reporter_settings())
    first = max(c.period_start for c in world.customers.values())
    start = first.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    stories = _stories(rng, list(world.customers), start)

    actions: list[tuple[datetime, int, str, object]] = []
    for s in stories:
        for ts, value, late in s.events:
            actions.append((ts + late, 0, "usage", (s.key, ts, value)))
        if s.change is not None:
            kind, at, delay = s.change
            actions.append((at, 1, kind, s.key))
            actions.append((at + delay, 2, "webhook", (s.key, kind, at)))
    for h in range(HOURS + 30):
        actions.append((start + timedelta(hours=h, minutes=5), 3, "push", None))
    assert reporter.push().status == "ok"  # every customer's context, on power
    paths = ["/v1/billing/meter_events", "/v1/billing/meter_event_adjustments"]
    control.set_faults(seed=rng.randrange(1 << 30), rate_429=0.1, rate_500=0.03, paths=paths)
    for when, _, what, arg in sorted(actions, key=lambda a: (a[0], a[1])):
        _move_to(control, clock, max(when, clock.now()))
        _act(world, stripe_client, reporter, basic_price, what, arg)
    assert control.faults()["injected"]
    control.clear_faults()

    last = max(c.period_end for c in world.customers.values())
    _move_to(control, clock, last + timedelta(minutes=4))
    assert reporter.push().status == "ok"
    for day in sorted({(start + timedelta(hours=h)).date() for h in range(HOURS)}):
        for result in reporter.reconcile(day, "manual"):
            assert result.discrepancies == [], day
    alerts = reporter.store.alerts(world.tenant_id, "open")
    assert {a.customer for a in alerts} == {s.key for s in stories if _moved(s)}
    assert {a.kind for a in alerts} <= {"split_after_push"}

    for s in stories:
        customer = world.customers[s.key]
        if s.change is not None and s.change[0] == "cancel":
            held = _stripe_units(control, world.event_name, customer.stripe_id, s.change[1])
            assert _cents(held, PRICES["power"]) == _expected(s)["0.5"], s.key
            continue
        invoice = control.close_period(customer.subscription)
        assert _charged(stripe_client, invoice) == _expected(s), s.key


def _act(world, client, reporter, basic_price, what, arg):
    if what == "usage":
        key, ts, value = arg
        add_usage(world, key, ts, value)
    elif what == "push":
        assert reporter.push().status == "ok"
    elif what == "downgrade":
        sub = world.customers[arg].subscription
        item = client.v1.subscriptions.retrieve(sub)["items"]["data"][0]["id"]
        client.v1.subscriptions.update(sub, {"items": [{"id": item, "price": basic_price}]})
    elif what == "cancel":
        client.v1.subscriptions.cancel(world.customers[arg].subscription)
    elif what == "webhook":
        key, kind, at = arg
        plan, status = ("basic", "active") if kind == "downgrade" else ("power", "canceled")
        _webhook(world, key, plan, status, at)


def _charged(client, invoice) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in client.v1.invoices.line_items.list(invoice["id"]).data:
        price = str(line["pricing"]["unit_amount_decimal"])
        if price in ("0.5", "0.2"):
            out[price] = out.get(price, 0) + int(line["amount"])
    return out


def _stripe_units(control, event_name, stripe_id, before: datetime) -> int:
    """What Stripe holds stamped before `before` (what the canceled item billed)."""
    events = control.meter_events(event_name=event_name, customer=stripe_id, status="accepted")
    return sum(int(Decimal(e["value"])) for e in events if e["timestamp"] < before.timestamp())


def test_the_oracle_rounds_each_line_half_up_and_bills_the_change_minute_on_the_old_plan():
    at = datetime(2026, 1, 1, 10, 30, 5, tzinfo=UTC)
    story = Story("c", [(at - timedelta(minutes=25), 3, timedelta(0)),
                        (at + timedelta(seconds=5), 4, timedelta(0)),
                        (at + timedelta(seconds=55), 3, timedelta(0))])  # fmt: skip
    story.change = ("downgrade", at, timedelta(0))
    assert _expected(story) == {"0.5": 4, "0.2": 1}  # 7 x 0.5 = 3.5 -> 4; 3 x 0.2 = 0.6 -> 1
