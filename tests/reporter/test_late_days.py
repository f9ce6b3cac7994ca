"""Late usage: days touched since the last night are reconciled again; usage Stripe received
after its invoice was finalized is an alert of its own, with the money."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from reporter.slots import floor_hour
from tests.reporter.support import (
    add_usage,
    emulator_clock,
    make_world,
    reporter_for,
    settings_for,
)

pytestmark = pytest.mark.integration


def _day_at(clock, days_back, hour):
    day = (clock.now() - timedelta(days=days_back)).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def test_a_late_event_three_days_back_is_reconciled_in_the_next_nightly_run(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for(lookback_hours=24 * 5))
    old, yesterday = _day_at(clock, 3, 10), _day_at(clock, 1, 10)
    add_usage(world, c.key, old + timedelta(minutes=5), 5)
    add_usage(world, c.key, yesterday + timedelta(minutes=5), 7)
    assert reporter.push().status == "ok"
    first = reporter.reconcile_nightly(yesterday.date())
    assert [(r.window[0].date(), r.discrepancies) for r in first] == [(yesterday.date(), [])]

    add_usage(world, c.key, old + timedelta(minutes=20), 3)  # three days late, not pushed yet
    again = reporter.reconcile_nightly(yesterday.date())
    assert [(r.window[0].date(), [(d.kind, d.difference) for d in r.discrepancies])
            for r in again] == [
        (old.date(), [("not_reported", Decimal(-3))]),
        (yesterday.date(), []),
    ]  # fmt: skip

    assert reporter.push().delivered == 1  # the correction
    after = reporter.reconcile_nightly(yesterday.date())
    assert [(r.window[0].date(), r.discrepancies) for r in after] == [
        (old.date(), []),
        (yesterday.date(), []),
    ]
    assert [a.status for a in reporter.store.alerts(world.tenant_id)] == ["resolved"]


def test_an_event_committed_after_the_mark_but_received_before_it_is_found(
    pg_conninfo, stripe_emulator, stripe_client
):
    """The aggregator commits an event after ingest received it: an event received before a
    night's mark and committed after it must still send its day to the next night."""
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    clock = emulator_clock(stripe_emulator.control)
    reporter = reporter_for(world, stripe_client, clock, settings_for(lookback_hours=24 * 5))
    old, yesterday = _day_at(clock, 3, 10), _day_at(clock, 1, 10)
    add_usage(world, c.key, yesterday + timedelta(minutes=5), 7)
    assert reporter.push().status == "ok"
    reporter.reconcile_nightly(yesterday.date())  # sets the mark
    add_usage(world, c.key, old + timedelta(minutes=20), 3)
    with world.pool.connection() as conn:  # received an hour before the mark, committed now
        conn.execute(
            "UPDATE usage_events SET received_at = received_at - interval '1 hour' "
            "WHERE tenant_id = %s AND ts = %s",
            (world.tenant_id, old + timedelta(minutes=20)),
        )
    again = reporter.reconcile_nightly(yesterday.date())
    assert old.date() in [r.window[0].date() for r in again]


def test_a_failed_night_leaves_its_mark_so_the_next_finds_its_days(
    pg_conninfo, stripe_emulator, stripe_client, monkeypatch
):
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    clock = emulator_clock(stripe_emulator.control)
    reporter = reporter_for(world, stripe_client, clock, settings_for(lookback_hours=24 * 5))
    old, yesterday = _day_at(clock, 3, 10), _day_at(clock, 1, 10)
    add_usage(world, c.key, yesterday + timedelta(minutes=5), 7)
    assert reporter.push().status == "ok"
    reporter.reconcile_nightly(yesterday.date())  # sets the mark
    add_usage(world, c.key, old + timedelta(minutes=20), 3)

    def fail(*_args, **_kwargs):
        raise RuntimeError("Stripe is down")

    with monkeypatch.context() as patched:
        patched.setattr(reporter.reconciler, "_compare", fail)
        failed = reporter.reconcile_nightly(yesterday.date())
    assert failed and not any(r.finished for r in failed)
    again = reporter.reconcile_nightly(yesterday.date())
    assert old.date() in [r.window[0].date() for r in again]
    assert all(r.finished for r in again)


def test_usage_received_after_its_invoice_was_finalized_raises_its_own_alert(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for())
    add_usage(world, c.key, floor_hour(c.period_end) - timedelta(hours=3), 10)
    end = c.period_end
    control.advance_clock(end.timestamp() - control.now() + 240)
    clock.set(end + timedelta(seconds=240))
    assert reporter.push().status == "ok"
    invoice = control.close_period(c.subscription)
    assert invoice["status"] == "paid"

    late = floor_hour(end) - timedelta(hours=2) + timedelta(minutes=7)
    add_usage(world, c.key, late, 6)  # arrives after the invoice was finalized
    control.advance_clock(3600)
    clock.advance(3600)
    assert reporter.push().delivered == 1

    (result,) = reporter.reconcile(late.date(), "manual")
    got = [(d.kind, d.window_start, d.difference, d.money_minor) for d in result.discrepancies]
    assert got == [("after_invoice_finalized", floor_hour(late), Decimal(6), Decimal(3))]


def test_the_lag_allowance_follows_the_measured_processing_delay(
    pg_conninfo, stripe_emulator, stripe_client
):
    control, emulator = stripe_emulator.control, stripe_emulator.emulator
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for(stripe_lag_s=0))
    config = emulator.config
    emulator.config = replace(config, meter_processing_delay=3600)
    try:
        start = floor_hour(clock.now())
        _move(control, clock, start + timedelta(hours=3, minutes=5) - clock.now())
        add_usage(world, c.key, start + timedelta(hours=2, minutes=1), 4)
        assert reporter.push().delivered == 1
        for _ in range(3):  # Stripe has not summarized it yet: the probe stays open
            _move(control, clock, timedelta(minutes=15))
            reporter.lag.resolve()
        assert reporter.lag.allowance_s() == 0
        _move(control, clock, timedelta(minutes=16))
        reporter.lag.resolve()
        assert reporter.lag.allowance_s() == 2 * 3660 + 60

        add_usage(world, c.key, start + timedelta(hours=3, minutes=10), 9)
        _move(control, clock, timedelta(minutes=1))
        assert reporter.push().delivered == 1  # hour 3 sent at 4:07, summarized at 5:07
        _move(control, clock, timedelta(minutes=10))
        day = (start + timedelta(hours=3)).date()
        assert reporter.reconciler.window(day)[1] <= start + timedelta(hours=3)  # not hour 3
        results = reporter.reconcile(day, "manual")
        assert [d for r in results for d in r.discrepancies] == []
    finally:
        emulator.config = config


def _move(control, clock, delta):
    control.advance_clock(delta.total_seconds())
    clock.advance(delta.total_seconds())
