"""Pushing to the Stripe emulator from real Postgres: invoices equal Postgres, faults, lateness."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from reporter.slots import ceil_minute
from tests.reporter.support import (
    add_usage,
    emulator_clock,
    make_world,
    postgres_total,
    reporter_for,
    settings_for,
    stripe_totals,
)

pytestmark = pytest.mark.integration


def test_invoice_metered_quantity_equals_postgres_after_period_close(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=3)
    control.advance_clock(20 * 86_400)
    clock = emulator_clock(control)
    settings = settings_for(lookback_hours=24 * 31)
    reporter = reporter_for(world, stripe_client, clock, settings)
    for n, c in enumerate(world.customers.values()):
        add_usage(world, c.key, c.period_start - timedelta(seconds=30), 1000)  # before the period
        add_usage(world, c.key, ceil_minute(c.period_start) + timedelta(seconds=5), 7 + n)
        for day in range(0, 19, 3):
            add_usage(
                world, c.key, c.period_start + timedelta(days=day, hours=2, minutes=n), 11 * (n + 1)
            )
    first = reporter.push()
    assert first.status == "ok" and first.delivered > 0

    c0 = next(iter(world.customers.values()))
    add_usage(world, c0.key, c0.period_start + timedelta(hours=2, minutes=30), 5)  # late, same hour
    second = reporter.push()
    assert second.delivered == 1  # one correction event for the difference

    end = c0.period_end
    control.advance_clock(end.timestamp() - control.now() + 240)
    clock.set(end + timedelta(seconds=240))
    for c in world.customers.values():
        add_usage(
            world, c.key, c.period_end - timedelta(minutes=3), 3
        )  # last minutes of the period
        add_usage(world, c.key, c.period_end + timedelta(seconds=90), 2)  # next period
    flush = reporter.push()
    assert flush.status == "ok"

    for c in world.customers.values():
        invoice = control.close_period(c.subscription)
        lines = stripe_client.v1.invoices.line_items.list(invoice["id"]).data
        metered = [line for line in lines if line["period"]["end"] == int(c.period_end.timestamp())]
        quantity = sum(Decimal(str(line["quantity"])) for line in metered)
        expected = postgres_total(
            world, c.key, ceil_minute(c.period_start), ceil_minute(c.period_end)
        )
        assert quantity == expected, c.key
        assert expected > 0


def test_all_usage_arrives_through_429s_and_500s(pg_conninfo, stripe_emulator, stripe_client):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=6)
    clock = emulator_clock(control)
    for c in world.customers.values():
        for h in range(1, 9):
            add_usage(world, c.key, clock.now() - timedelta(hours=h, minutes=7), h * 3)
    control.set_faults(seed=7, rate_429=0.20, rate_500=0.05)
    reporter = reporter_for(world, stripe_client, clock)
    report = reporter.push()
    faults = control.faults()["injected"]
    control.clear_faults()
    assert report.status == "ok", report.errors
    assert any(f["kind"] == "rate_limited" for f in faults)
    assert any(f["kind"] == "server_error" for f in faults)
    totals = stripe_totals(control, world.event_name)
    for c in world.customers.values():
        expected = postgres_total(world, c.key, clock.now() - timedelta(days=1), clock.now())
        assert totals[c.stripe_id] == expected
    assert reporter.metrics.registry.get_sample_value("meterline_reporter_stripe_retries_total") > 0


def test_stream_path_with_500_after_processing_never_double_counts(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=4)
    clock = emulator_clock(control)
    for c in world.customers.values():
        for h in range(2, 31):  # complete hours only, whatever the minute now
            add_usage(world, c.key, clock.now() - timedelta(hours=h), 1)
    control.set_faults(seed=3, rate_429=0.1, rate_500_after=0.2)
    reporter = reporter_for(
        world, stripe_client, clock, settings_for(stream_threshold=10, push_batch=40)
    )
    assert reporter.push().status == "ok"
    control.clear_faults()
    assert {r["source"] for r in control.meter_events(event_name=world.event_name)} == {"stream"}
    totals = stripe_totals(control, world.event_name)
    for c in world.customers.values():
        assert totals[c.stripe_id] == Decimal(29)


def test_usage_older_than_stripe_window_raises_an_alert_and_is_not_sent(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    control.advance_clock(40 * 86_400)
    clock = emulator_clock(control)
    c = next(iter(world.customers.values()))
    add_usage(world, c.key, clock.now() - timedelta(days=36), 4)
    reporter = reporter_for(world, stripe_client, clock, settings_for(lookback_hours=24 * 40))
    report = reporter.push()
    assert report.too_late == 1 and report.delivered == 0
    alerts = reporter.store.alerts(world.tenant_id, "open")
    assert [(a.kind, a.our_units, a.difference) for a in alerts] == [
        ("too_late_for_stripe", Decimal(4), Decimal(-4))
    ]
    assert control.meter_events(event_name=world.event_name) == []
    assert reporter.push().slots == 0  # recorded once, not raised again every run


def test_a_row_is_dated_by_the_reporters_clock_so_a_pending_row_is_resent(
    pg_conninfo, stripe_emulator, stripe_client
):
    """The unconfirmed horizon is judged on the reporter's clock: a row must be dated by it
    too, not by Postgres's, or a reporter whose clock runs ahead gives up on a fresh row."""
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    control.advance_clock(2 * 86_400)  # the reporter's (and Stripe's) time: two days ahead
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for(retry_max_attempts=2))
    add_usage(world, c.key, clock.now() - timedelta(hours=2), 5)
    control.set_faults(rate_500=1.0, paths=["/v1/billing/meter_events"])
    assert reporter.push().left_pending == 1  # Stripe is down
    control.clear_faults()

    assert reporter.push().delivered == 1
    assert reporter.store.alerts(world.tenant_id) == []
