"""Meters billed through Stripe's `last` formula: max meters bill the period's maximum, and a
correction of a last-value slot bills whatever Stripe's tie-break for equal timestamps."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from reporter.slots import ceil_minute
from tests.reporter.support import (
    add_usage,
    emulator_clock,
    make_world,
    reporter_for,
    settings_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def earliest_wins(stripe_emulator) -> Iterator[None]:
    """Stripe's tie-break for equal timestamps is undocumented: take the adverse one."""
    emulator = stripe_emulator.emulator
    config = emulator.config
    emulator.config = dataclasses.replace(config, last_tie_break="earliest_received")
    try:
        yield
    finally:
        emulator.config = config


def _invoiced(control, stripe_client, customer) -> Decimal:
    invoice = control.close_period(customer.subscription)
    lines = stripe_client.v1.invoices.line_items.list(invoice["id"]).data
    end = int(customer.period_end.timestamp())
    return sum(
        (Decimal(str(line["quantity"])) for line in lines if line["period"]["end"] == end),
        Decimal(0),
    )


def test_max_meter_invoice_is_the_periods_maximum(
    pg_conninfo, stripe_emulator, stripe_client, earliest_wins
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=3, meters={"seats": "max"})
    control.advance_clock(20 * 86_400)
    clock = emulator_clock(control)
    first = reporter_for(world, stripe_client, clock, settings_for(lookback_hours=24 * 31))
    reporter = reporter_for(world, stripe_client, clock)  # 48 h back, then late hours only
    rng = random.Random(20)
    expected = {}
    for c in world.customers.values():
        start = ceil_minute(c.period_start)
        hours = sorted(rng.sample(range(1, 19 * 24), 12))
        values = [rng.randint(1, 500) for _ in hours]
        for hour, value in zip(hours, values, strict=True):
            add_usage(world, c.key, start + timedelta(hours=hour, minutes=7), value, "seats")
        add_usage(world, c.key, start - timedelta(hours=2), 9999, "seats")  # previous period
        expected[c.key] = max(values)
    assert first.push().status == "ok"

    late = next(iter(world.customers.values()))
    when = ceil_minute(late.period_start) + timedelta(hours=30, minutes=1)
    add_usage(world, late.key, when, 777, "seats")  # late, and the period's new maximum
    with world.pool.connection() as conn:
        conn.execute("UPDATE usage_events SET received_at = %s WHERE ts = %s", (clock.now(), when))
    expected[late.key] = 777
    late_push = reporter.push()
    assert late_push.status == "ok" and late_push.delivered >= 2  # its hour and later ones

    end = late.period_end
    control.advance_clock(end.timestamp() - control.now() + 240)
    clock.set(end + timedelta(seconds=240))
    assert reporter.push().status == "ok"
    for c in world.customers.values():
        assert _invoiced(control, stripe_client, c) == expected[c.key], c.key
    day = (late.period_start - timedelta(days=1)).date()
    while day <= end.date():
        (result,) = reporter.reconcile(day, "manual")
        assert result.discrepancies == [], day
        day += timedelta(days=1)


def test_corrections_of_a_last_value_slot_bill_the_newest(
    pg_conninfo, stripe_emulator, stripe_client, earliest_wins
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1, meters={"level": "latest"})
    control.advance_clock(86_400)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    (c,) = world.customers.values()
    hour = clock.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    add_usage(world, c.key, hour + timedelta(minutes=5), 40, "level")
    assert reporter.push().delivered == 1
    add_usage(world, c.key, hour + timedelta(minutes=9), 25, "level")
    assert reporter.push().delivered == 1
    add_usage(world, c.key, hour + timedelta(minutes=12), 31, "level")
    assert reporter.push().delivered == 1

    (result,) = reporter.reconcile(hour.date(), "manual")
    assert result.discrepancies == []
    control.advance_clock(c.period_end.timestamp() - control.now() + 60)
    assert _invoiced(control, stripe_client, c) == Decimal(31)
