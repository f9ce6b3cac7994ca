"""Repairs against the emulator: safe to click at any time, atomic when they touch many rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from meterline.errors import Conflict
from meterline.stripe.meter_events import MeterEventSender, TransientStripeError
from tests.reporter.support import (
    World,
    add_usage,
    emulator_clock,
    make_world,
    reporter_for,
    stripe_totals,
)

pytestmark = pytest.mark.integration
DAY_AND_A_HALF = 36 * 3600


@pytest.fixture
def emulator(stripe_emulator) -> Iterator[object]:
    """The in-process emulator; its configuration is restored afterwards."""
    config = stripe_emulator.emulator.config
    try:
        yield stripe_emulator.emulator
    finally:
        stripe_emulator.emulator.config = config


def _processing_delay(emulator, seconds: float) -> None:
    emulator.config = dataclasses.replace(emulator.config, meter_processing_delay=seconds)


def _yesterday_at(clock, hour: int) -> datetime:
    day = (clock.now() - timedelta(days=1)).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _lose(emulator, identifier: str) -> None:
    """Stripe loses an event (as the drop fault does): never summarized, identifier free."""
    index = emulator.store.identifiers.pop(identifier)
    emulator.store.meter_events[index]["status"] = "dropped"


def _advance(control, clock, seconds: float) -> None:
    control.advance_clock(seconds)
    clock.advance(seconds)


def _only_alert(reporter, world: World, kind: str):
    (alert,) = [a for a in reporter.store.alerts(world.tenant_id, "open") if a.kind == kind]
    return alert


def test_resend_rereads_stripe_and_never_double_bills(
    pg_conninfo, stripe_emulator, stripe_client, emulator
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=2)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    held, lost = world.customers.values()
    when = _yesterday_at(clock, 10) + timedelta(minutes=5)
    add_usage(world, held.key, when, 12)
    add_usage(world, lost.key, when, 30)
    _processing_delay(emulator, 7200)  # Stripe's summaries lag when reconciliation runs
    assert reporter.push().delivered == 2
    _lose(emulator, _ledger(world, lost.key)[0][0])
    reporter.reconcile(when.date(), "manual")
    assert {a.customer for a in reporter.store.alerts(world.tenant_id, "open")} == {
        held.key,
        lost.key,
    }

    _advance(control, clock, DAY_AND_A_HALF)  # past Stripe's identifier dedupe
    _processing_delay(emulator, 600)  # and a resend shows in summaries only 10 minutes later
    alerts = {a.customer: a for a in reporter.store.alerts(world.tenant_id, "open")}
    for _ in range(2):
        for customer in (held.key, lost.key):
            reporter.repairs.apply(alerts[customer], "resend", "key_test")
    _advance(control, clock, 700)

    totals = stripe_totals(control, world.event_name)
    assert totals == {held.stripe_id: Decimal(12), lost.stripe_id: Decimal(30)}
    outcomes = [r["outcome"] for r in reporter.store.repairs(alerts[held.key].id)]
    assert all("nothing sent" in o for o in outcomes)


def test_a_multi_row_cancel_that_cannot_complete_changes_nothing(
    pg_conninfo, stripe_emulator, stripe_client, emulator
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=2)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    h = _yesterday_at(clock, 10)
    for c in world.customers.values():
        add_usage(world, c.key, h + timedelta(minutes=5), 10)
    reporter.push()
    for c in world.customers.values():
        add_usage(world, c.key, h + timedelta(minutes=20), 5)
    reporter.push()
    with world.pool.connection() as conn:  # our count falls below what Stripe holds
        conn.execute(
            "UPDATE usage_rollups_minute SET value = 1 WHERE tenant_id = %s AND bucket = %s",
            (world.tenant_id, h + timedelta(minutes=20)),
        )
    reporter.push()
    broken, fine = world.customers.values()
    alerts = {a.customer: a for a in reporter.store.alerts(world.tenant_id, "open")}
    assert alerts[broken.key].kind == "value_mismatch"
    assert reporter.repairs.offers(alerts[broken.key]) == ["cancel"]
    rows = _ledger(world, broken.key)
    _lose(emulator, rows[-1][0])  # its second event cannot be canceled any more

    with pytest.raises(Conflict):
        reporter.repairs.apply(alerts[broken.key], "cancel", "key_test")
    assert _ledger(world, broken.key) == rows
    assert reporter.store.repairs(alerts[broken.key].id) == []
    statuses = {
        e["identifier"]: e["status"] for e in control.meter_events(event_name=world.event_name)
    }
    assert statuses[rows[0][0]] == "accepted"

    reporter.repairs.apply(alerts[fine.key], "cancel", "key_test")
    assert [s for _, s in _ledger(world, fine.key)] == ["canceled", "canceled", "sent"]
    assert stripe_totals(control, world.event_name)[fine.stripe_id] == Decimal(11)
    (logged,) = reporter.store.repairs(alerts[fine.key].id)
    assert len(logged["identifiers"]) == 2


def _ledger(world: World, customer: str) -> list[tuple[str, str]]:
    with world.pool.connection() as conn:
        return conn.execute(
            "SELECT identifier, status FROM report_ledger WHERE tenant_id = %s AND customer = %s "
            "ORDER BY revision",
            (world.tenant_id, customer),
        ).fetchall()


class _FailsSecondCancel(MeterEventSender):
    """The real sender, except that Stripe fails the second cancel it is asked for."""

    def __init__(self, inner: MeterEventSender) -> None:
        self._inner = inner
        self.cancels = 0

    def send(self, events, attempt=0):
        return self._inner.send(events, attempt)

    def cancel(self, event_name, identifier):
        self.cancels += 1
        if self.cancels == 2:
            raise TransientStripeError("Stripe answered 500")
        self._inner.cancel(event_name, identifier)


def test_a_cancel_that_stripe_fails_midway_leaves_the_ledger_equal_to_stripe(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    clock = emulator_clock(control)
    plain = reporter_for(world, stripe_client, clock)
    sender = _FailsSecondCancel(plain.sender)
    reporter = reporter_for(world, stripe_client, clock, sender=sender)
    (c,) = world.customers.values()
    h = _yesterday_at(clock, 10)
    add_usage(world, c.key, h + timedelta(minutes=5), 10)
    reporter.push()
    add_usage(world, c.key, h + timedelta(minutes=20), 5)
    reporter.push()
    with world.pool.connection() as conn:
        conn.execute(
            "UPDATE usage_rollups_minute SET value = 1 WHERE tenant_id = %s AND bucket = %s",
            (world.tenant_id, h + timedelta(minutes=20)),
        )
    reporter.push()
    alert = _only_alert(reporter, world, "value_mismatch")

    with pytest.raises(Conflict):
        reporter.repairs.apply(alert, "cancel", "key_test")
    assert [s for _, s in _ledger(world, c.key)] == ["canceled", "sent", "sent"]
    assert stripe_totals(control, world.event_name)[c.stripe_id] == Decimal(11)
    (logged,) = reporter.store.repairs(alert.id)
    assert "failed" in logged["outcome"] and len(logged["identifiers"]) == 1
    (result,) = reporter.reconcile(h.date(), "manual")
    assert result.discrepancies == []


def _move_to_new_stripe_customer(world: World, client, key: str, at: datetime) -> str:
    """The customer is billed from `at` on by a new Stripe customer (its own subscription)."""
    old = world.customers[key]
    price = client.v1.subscriptions.retrieve(old.subscription)["items"]["data"][0]["price"]["id"]
    customer = client.v1.customers.create({"email": f"{key}-2@example.com"})
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price}]})
    with world.pool.connection() as conn:
        conn.execute(
            "UPDATE customers SET stripe_customer_id = %s WHERE tenant_id = %s AND id = %s",
            (customer.id, world.tenant_id, key),
        )
        conn.execute(
            "UPDATE subscriptions SET stripe_subscription_id = %s, stripe_event_created = %s, "
            "updated_at = now() WHERE tenant_id = %s AND customer = %s",
            (sub.id, int(at.timestamp()), world.tenant_id, key),
        )
    return str(customer.id)


def test_a_resend_reads_stripe_for_each_stripe_customer_of_the_window(
    pg_conninfo, stripe_emulator, stripe_client, emulator
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    (c,) = world.customers.values()
    h = _yesterday_at(clock, 10)
    assert reporter.push().status == "ok"  # the first context, on the first Stripe customer
    add_usage(world, c.key, h + timedelta(minutes=5), 10)
    second = _move_to_new_stripe_customer(world, stripe_client, c.key, h + timedelta(minutes=30))
    add_usage(world, c.key, h + timedelta(minutes=40), 7)
    assert reporter.push().delivered == 2  # one slot on each side of the change
    with world.pool.connection() as conn:
        (first_row,) = conn.execute(
            "SELECT identifier FROM report_ledger WHERE tenant_id = %s ORDER BY slot_start LIMIT 1",
            (world.tenant_id,),
        ).fetchone()
    _lose(emulator, first_row)  # Stripe lost the first customer's event
    reporter.reconcile(h.date(), "manual")
    alert = _only_alert(reporter, world, "missing_in_stripe")

    _advance(control, clock, DAY_AND_A_HALF)  # both rows past Stripe's identifier dedupe
    outcome = reporter.repairs.apply(alert, "resend", "key_test")

    totals = stripe_totals(control, world.event_name)
    assert totals == {c.stripe_id: Decimal(10), second: Decimal(7)}, outcome
