"""Reconciliation against the emulator with seeded faults, and the safe repairs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.reporter.support import (
    add_usage,
    emulator_clock,
    make_world,
    reporter_for,
    settings_for,
)

pytestmark = pytest.mark.integration


def _yesterday_at(clock, hour):
    day = (clock.now() - timedelta(days=1)).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _records(emulator, event_name, customer):
    return [
        r for r in emulator.store.meter_events
        if r["event_name"] == event_name and r["customer"] == customer and r["status"] == "accepted"
    ]  # fmt: skip


def _at(records, when):
    return next(r for r in records if r["timestamp"] == int(when.timestamp()))


def test_seeded_faults_are_each_reported_with_kind_and_amount(
    pg_conninfo, stripe_emulator, stripe_client
):
    control, emulator = stripe_emulator.control, stripe_emulator.emulator
    world = make_world(pg_conninfo, stripe_client, n_customers=6)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    a, b, c, d, e, f = world.customers.values()
    h = {n: _yesterday_at(clock, n) for n in range(9, 16)}
    for i, cust in enumerate((a, b, c, e, f)):
        for hour in (10, 11, 12, 13):
            add_usage(world, cust.key, h[hour] + timedelta(minutes=i), 10 * hour + i)
    add_usage(world, d.key, h[10] + timedelta(minutes=9), 40)
    add_usage(world, d.key, h[12] + timedelta(minutes=9), 41)
    assert reporter.push().status == "ok"

    day = h[10].date()
    clean = reporter.reconcile(day, "manual")
    assert [(r.hours_checked, r.discrepancies) for r in clean] == [(22, [])]
    assert reporter.store.runs(world.tenant_id)[0].status == "ok"

    dropped = _at(_records(emulator, world.event_name, a.stripe_id), h[12])
    dropped["status"] = "dropped"
    emulator.store.identifiers.pop(dropped["identifier"])
    twice = _at(_records(emulator, world.event_name, b.stripe_id), h[11])
    emulator.store.meter_events.append({**twice, "identifier": "someone-else-1"})
    changed = _at(_records(emulator, world.event_name, c.stripe_id), h[13])
    changed["value"] = str(Decimal(changed["value"]) + 7)
    shifted = _at(_records(emulator, world.event_name, d.stripe_id), h[10])
    shifted["timestamp"] += 3600
    add_usage(world, f.key, h[14] + timedelta(minutes=2), 5)  # counted, never pushed

    found = reporter.reconcile(day, "manual")[0]
    got = {(x.kind, x.customer, x.window_start.hour, x.difference) for x in found.discrepancies}
    assert got == {
        ("missing_in_stripe", a.key, 12, Decimal(-120)),
        ("extra_in_stripe", b.key, 11, Decimal(111)),
        ("value_mismatch", c.key, 13, Decimal(7)),
        ("missing_in_stripe", d.key, 10, Decimal(-40)),
        ("extra_in_stripe", d.key, 11, Decimal(40)),
        ("not_reported", f.key, 14, Decimal(-5)),
    }
    alerts = {(x.kind, x.customer): x for x in reporter.store.alerts(world.tenant_id, "open")}
    assert len(alerts) == 6
    assert alerts[("missing_in_stripe", a.key)].money_minor == Decimal(60)  # 120 units at 0.5 cents
    assert alerts[("extra_in_stripe", b.key)].stripe_units == Decimal(222)
    assert reporter.notifier.sent and "6 new alert(s)" in reporter.notifier.sent[0]["text"]

    again = reporter.reconcile(day, "manual")[0]
    assert again.opened == [] and len(reporter.store.alerts(world.tenant_id, "open")) == 6

    missing = alerts[("missing_in_stripe", a.key)]
    assert reporter.repairs.offers(missing) == ["resend"]
    assert "1 delivered" in reporter.repairs.apply(missing, "resend", "key_test")
    unreported = alerts[("not_reported", f.key)]
    assert reporter.repairs.offers(unreported) == ["push"]
    reporter.repairs.apply(unreported, "push", "key_test")
    assert reporter.repairs.offers(alerts[("extra_in_stripe", b.key)]) == []

    after = reporter.reconcile(day, "manual")[0]
    left = {(x.kind, x.customer) for x in after.discrepancies}
    assert left == {("extra_in_stripe", b.key), ("value_mismatch", c.key),
                    ("missing_in_stripe", d.key), ("extra_in_stripe", d.key)}  # fmt: skip
    assert reporter.store.alert(world.tenant_id, missing.id).status == "resolved"


def test_reconciliation_waits_for_stripe_processing_lag(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    today = clock.now().date()
    start, end = reporter.reconciler.window(today)
    assert end <= clock.now() and start.date() == today


def test_rows_pending_during_a_stripe_outage_are_in_flight_not_missing(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=2)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for(retry_max_attempts=2))
    a, b = world.customers.values()
    h = {n: _yesterday_at(clock, n) for n in (10, 11)}
    add_usage(world, a.key, h[10] + timedelta(minutes=3), 12)
    assert reporter.push().status == "ok"
    add_usage(world, b.key, h[11] + timedelta(minutes=3), 7)
    control.set_faults(rate_500=1.0, paths=["/v1/billing/meter_events"])
    outage = reporter.push()
    assert outage.left_pending == 1 and outage.delivered == 0

    (result,) = reporter.reconcile(h[10].date(), "manual")
    control.clear_faults()
    assert result.discrepancies == []
    assert reporter.store.alerts(world.tenant_id) == []
    assert reporter.notifier.sent == []

    assert reporter.push().delivered == 1
    (after,) = reporter.reconcile(h[10].date(), "manual")
    assert after.discrepancies == []


def test_a_pending_row_past_its_retry_horizon_is_missing(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for(retry_max_attempts=2))
    (a,) = world.customers.values()
    when = _yesterday_at(clock, 10) + timedelta(minutes=3)
    add_usage(world, a.key, when, 12)
    control.set_faults(rate_500=1.0, paths=["/v1/billing/meter_events"])
    assert reporter.push().left_pending == 1
    control.clear_faults()
    clock.advance(timedelta(hours=23, minutes=30).total_seconds())
    (result,) = reporter.reconcile(when.date(), "manual")
    assert [(d.kind, d.difference) for d in result.discrepancies] == [
        ("missing_in_stripe", Decimal(-12))
    ]
