"""Plan changes and boundaries learned late, through Postgres, the reporter and the emulator.

A slot is billed by the context in force when its usage happened; an hour already pushed is
never split again: it is canceled within Stripe's window, or kept whole with an alert."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from meterline.catalog.parse import parse_catalog
from meterline.catalog.repository import PostgresCatalogRepository
from reporter.slots import floor_hour
from tests.reporter.support import (
    add_usage,
    catalog_with,
    emulator_clock,
    make_world,
    reporter_for,
    settings_for,
    stripe_totals,
    utc,
)

pytestmark = pytest.mark.integration


def _with_basic(world, client, included: int = 0):
    """A `basic` plan billing api_calls at 0.2 cents, in the catalog and in Stripe; power's
    price with `included` free units in the catalog (Stripe's stays per unit)."""
    catalog = catalog_with({"api_calls": "sum"})
    if included:
        power = catalog["plans"][1]
        power["metered_prices"]["api_calls"]["included"] = included
        power["features"]["api_calls"]["limit"] = included  # included units end at the limit
    catalog["plans"] = [*catalog["plans"], _basic(["api_calls"])]
    PostgresCatalogRepository(world.pool).apply(world.tenant_id, parse_catalog(catalog))
    price = client.v1.prices.create({
        "currency": "usd", "unit_amount_decimal": "0.2", "product_data": {"name": "basic"},
        "recurring": {"interval": "month", "usage_type": "metered", "meter": world.meter_id},
    })  # fmt: skip
    return price.id


def _basic(meters: list[str]) -> dict:
    """A `basic` plan billing `meters` at 0.2 cents each."""
    return {
        "key": "basic",
        "price": {"amount": 900, "currency": "usd", "interval": "month"},
        "metered_prices": {k: {"unit_amount_decimal": "0.2", "currency": "usd"} for k in meters},
        "features": {
            k: {"limit": 50000, "reset": "billing_period", "overage": "allow"} for k in meters
        },
    }


def _move_to(control, clock, when: datetime) -> None:
    control.advance_clock(max(0.0, when.timestamp() - control.now()))
    clock.set(when)


def _webhook(world, customer, plan, status, at: datetime) -> None:
    """What the subscription webhook leaves in Postgres (the change dated by its event)."""
    with world.pool.connection() as conn:
        conn.execute(
            "UPDATE subscriptions SET plan = %s, status = %s, stripe_event_created = %s, "
            "updated_at = now() WHERE tenant_id = %s AND customer = %s",
            (plan, status, int(at.timestamp()), world.tenant_id, customer),
        )


def _metered_lines(client, invoice):
    lines = client.v1.invoices.line_items.list(invoice["id"]).data
    found = [(str(line["pricing"]["unit_amount_decimal"]), line) for line in lines]
    return sorted(
        (price, Decimal(str(line["quantity"])), line["amount"])
        for price, line in found
        if price in ("0.5", "0.2")
    )


def test_a_mid_hour_downgrade_bills_each_side_at_its_own_plan(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    basic_price = _with_basic(world, stripe_client)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for())
    hour = floor_hour(c.period_start) + timedelta(hours=3)
    _move_to(control, clock, hour + timedelta(minutes=5))
    assert reporter.push().status == "ok"  # contexts recorded while on power

    add_usage(world, c.key, hour + timedelta(minutes=10), 8)
    change = hour + timedelta(minutes=25)
    _move_to(control, clock, change)
    sub = stripe_client.v1.subscriptions.retrieve(c.subscription)
    item = sub["items"]["data"][0]["id"]
    stripe_client.v1.subscriptions.update(
        c.subscription, {"items": [{"id": item, "price": basic_price}]}
    )
    _webhook(world, c.key, "basic", "active", change)
    add_usage(world, c.key, hour + timedelta(minutes=40), 5)
    _move_to(control, clock, hour + timedelta(hours=1, minutes=5))
    assert reporter.push().status == "ok"

    (result,) = reporter.reconcile(hour.date(), "manual")
    assert result.discrepancies == []
    invoice = control.close_period(c.subscription)
    assert _metered_lines(stripe_client, invoice) == [
        ("0.2", Decimal(5), 1),
        ("0.5", Decimal(8), 4),
    ]


def test_a_mid_hour_cancellation_drops_nothing_before_it(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for())
    hour = floor_hour(c.period_start) + timedelta(hours=2)
    _move_to(control, clock, hour + timedelta(minutes=5))
    assert reporter.push().status == "ok"

    add_usage(world, c.key, hour + timedelta(minutes=10), 9)
    change = hour + timedelta(minutes=30)
    _move_to(control, clock, change)
    stripe_client.v1.subscriptions.cancel(c.subscription)
    _webhook(world, c.key, "power", "canceled", change)
    add_usage(world, c.key, hour + timedelta(minutes=45), 4)  # after it: billed by no one
    _move_to(control, clock, hour + timedelta(hours=1, minutes=5))
    assert reporter.push().status == "ok"

    assert stripe_totals(control, world.event_name) == {c.stripe_id: Decimal(9)}
    (result,) = reporter.reconcile(hour.date(), "manual")
    assert result.discrepancies == []
    assert reporter.store.alerts(world.tenant_id) == []


def _late_boundary_world(pg_conninfo, stripe_client, control, included: int = 0):
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    basic_price = _with_basic(world, stripe_client, included)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for())
    hour = floor_hour(c.period_start) + timedelta(hours=3)
    _move_to(control, clock, hour + timedelta(minutes=5))
    assert reporter.push().status == "ok"
    add_usage(world, c.key, hour + timedelta(minutes=10), 8)
    change = hour + timedelta(minutes=25)
    _move_to(control, clock, change)
    item = stripe_client.v1.subscriptions.retrieve(c.subscription)["items"]["data"][0]["id"]
    stripe_client.v1.subscriptions.update(
        c.subscription, {"items": [{"id": item, "price": basic_price}]}
    )
    add_usage(world, c.key, hour + timedelta(minutes=40), 6)
    _move_to(control, clock, hour + timedelta(hours=1, minutes=5))
    assert reporter.push().delivered == 1  # the whole hour, 14 units, before the webhook
    return world, c, clock, reporter, hour, change


def test_a_boundary_learned_within_the_cancel_window_nets_the_pushed_hour_out(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world, c, clock, reporter, hour, change = _late_boundary_world(
        pg_conninfo, stripe_client, control
    )
    _move_to(control, clock, hour + timedelta(hours=3, minutes=5))  # the webhook, 2 h 40 late
    _webhook(world, c.key, "basic", "active", change)
    assert reporter.push().status == "ok"

    assert stripe_totals(control, world.event_name) == {c.stripe_id: Decimal(14)}
    (result,) = reporter.reconcile(hour.date(), "manual")
    assert result.discrepancies == []
    assert reporter.store.alerts(world.tenant_id) == []
    invoice = control.close_period(c.subscription)
    assert _metered_lines(stripe_client, invoice) == [
        ("0.2", Decimal(6), 1),
        ("0.5", Decimal(8), 4),
    ]


def test_a_boundary_learned_past_the_cancel_window_keeps_the_hour_whole_and_alerts(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world, c, clock, reporter, hour, change = _late_boundary_world(
        pg_conninfo, stripe_client, control
    )
    _move_to(control, clock, hour + timedelta(hours=30))  # the webhook, a day late
    _webhook(world, c.key, "basic", "active", change)
    assert reporter.push().status == "ok"

    assert stripe_totals(control, world.event_name) == {c.stripe_id: Decimal(14)}
    # power's side bills the 6 units after the change (3 cents at 0.5), basic's lacks them
    # (1.2 cents at 0.2, a 1-cent line): its period starts where the hour ends
    alerts = reporter.store.alerts(world.tenant_id, "open")
    found = sorted((a.window_start, a.our_units, a.difference, a.money_minor) for a in alerts)
    assert [a.kind for a in alerts] == ["split_after_push"] * 2
    assert found == [
        (change, Decimal(6), Decimal(6), Decimal(3)),
        (hour + timedelta(hours=1), Decimal(6), Decimal(-6), Decimal(1)),
    ]
    (result,) = reporter.reconcile(hour.date(), "manual")
    assert result.discrepancies == []


def test_a_boundary_learned_too_late_prices_the_moved_units_on_the_side_that_billed_them(
    pg_conninfo, stripe_emulator, stripe_client
):
    """Power includes 10 units: its side should bill the 8 before the change (0 cents) and
    bills 14 (4 past the included, 2 cents); the money is that difference, not the price of 6
    more units on top of the 14 (3 cents). Basic's side lacks the 6 (1 cent at 0.2)."""
    control = stripe_emulator.control
    world, c, clock, reporter, hour, change = _late_boundary_world(
        pg_conninfo, stripe_client, control, included=10
    )
    _move_to(control, clock, hour + timedelta(hours=30))  # the webhook, a day late
    _webhook(world, c.key, "basic", "active", change)
    assert reporter.push().status == "ok"

    alerts = reporter.store.alerts(world.tenant_id, "open")
    found = sorted((a.window_start, a.our_units, a.difference, a.money_minor) for a in alerts)
    assert found == [
        (change, Decimal(6), Decimal(6), Decimal(2)),
        (hour + timedelta(hours=1), Decimal(6), Decimal(-6), Decimal(1)),
    ]


def test_an_hour_billed_before_a_downgrade_to_free_is_still_reconciled_and_repaired(
    pg_conninfo, stripe_emulator, stripe_client
):
    control, emulator = stripe_emulator.control, stripe_emulator.emulator
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for())
    hour = floor_hour(c.period_start) + timedelta(hours=2)
    _move_to(control, clock, hour + timedelta(minutes=5))
    assert reporter.push().status == "ok"
    add_usage(world, c.key, hour + timedelta(minutes=10), 9)
    _webhook(world, c.key, "free", "active", hour + timedelta(minutes=30))
    _move_to(control, clock, hour + timedelta(hours=1, minutes=5))
    assert reporter.push().delivered == 1

    (sent,) = [r for r in emulator.store.meter_events if r["event_name"] == world.event_name]
    sent["status"] = "dropped"
    emulator.store.identifiers.pop(sent["identifier"])
    (result,) = reporter.reconcile(hour.date(), "manual")
    assert [(d.kind, d.difference) for d in result.discrepancies] == [
        ("missing_in_stripe", Decimal(-9))
    ]
    (alert,) = reporter.store.alerts(world.tenant_id, "open")
    assert reporter.repairs.offers(alert) == ["resend"]
    assert "1 delivered" in reporter.repairs.apply(alert, "resend", "key_test")
    (after,) = reporter.reconcile(hour.date(), "manual")
    assert after.discrepancies == []


def test_a_downgrade_undone_within_the_hour_bills_the_minutes_between_at_the_lower_price(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    basic_price = _with_basic(world, stripe_client)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for())
    hour = floor_hour(c.period_start) + timedelta(hours=3)
    _move_to(control, clock, hour + timedelta(minutes=5))
    assert reporter.push().status == "ok"
    reporter.tick()
    item = stripe_client.v1.subscriptions.retrieve(c.subscription)["items"]["data"][0]
    power_price = item["price"]["id"]
    for minute, value in ((8, 8), (20, 5), (45, 6)):
        add_usage(world, c.key, hour + timedelta(minutes=minute), value)
    for minute, plan, price in ((10, "basic", basic_price), (40, "power", power_price)):
        _move_to(control, clock, hour + timedelta(minutes=minute))
        stripe_client.v1.subscriptions.update(
            c.subscription, {"items": [{"id": item["id"], "price": price}]}
        )
        _webhook(world, c.key, plan, "active", hour + timedelta(minutes=minute))
        _move_to(control, clock, hour + timedelta(minutes=minute, seconds=15))
        reporter.tick()  # the scheduler's tick records the context between two pushes
    _move_to(control, clock, hour + timedelta(hours=1, minutes=5))
    assert reporter.push().status == "ok"

    (result,) = reporter.reconcile(hour.date(), "manual")
    assert result.discrepancies == []
    invoice = control.close_period(c.subscription)
    assert _metered_lines(stripe_client, invoice) == [
        ("0.2", Decimal(5), 1),
        ("0.5", Decimal(6), 3),
        ("0.5", Decimal(8), 4),
    ]


def test_a_change_stamped_before_the_last_look_but_committed_after_is_recorded(
    pg_conninfo, stripe_emulator, stripe_client
):
    """Writers stamp `updated_at` when their transaction starts: a change committed after the
    scheduler's last look, stamped before it, is still picked up by the next look."""
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    clock = emulator_clock(stripe_emulator.control)
    reporter = reporter_for(world, stripe_client, clock, settings_for())
    assert reporter.push().status == "ok"
    reporter.pusher.sync_changed()  # the last look
    with world.pool.connection() as conn:
        conn.execute(
            "UPDATE subscriptions SET updated_at = now() - interval '10 seconds' "
            "WHERE tenant_id = %s AND customer = %s",
            (world.tenant_id, c.key),
        )
    assert reporter.pusher.sync_changed() == 1


def _cancel_before_a_period_end_world(
    pg_conninfo, stripe_client, control, after=timedelta(minutes=25)
):
    """A customer whose period ends at hh:40:30 (the boundary at hh:41), canceled at hh:25 with
    usage on both sides of the cancellation and after the period end, whose webhook has not
    come yet: the slot before the period end goes out with the flush at hh:44 and the slot
    after it with the hourly push at hh+1:05, both under the plan."""
    now = utc(control.now())
    control.advance_clock(
        (floor_hour(now) + timedelta(minutes=100, seconds=30) - now).total_seconds()
    )
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    clock = emulator_clock(control)
    end = c.period_end
    hour = floor_hour(end)
    assert (end - hour) == timedelta(minutes=40, seconds=30)
    _move_to(control, clock, hour + timedelta(minutes=5))
    reporter = reporter_for(world, stripe_client, clock, settings_for())
    assert reporter.push().status == "ok"
    for minute, value in ((10, 8), (30, 3), (50, 6)):
        add_usage(world, c.key, hour + timedelta(minutes=minute), value)
    change = hour + after
    _move_to(control, clock, change)
    stripe_client.v1.subscriptions.cancel(c.subscription)
    _move_to(control, clock, hour + timedelta(minutes=44))  # the period-end flush
    assert reporter.push().delivered == 1  # [hh:00, hh:41): 11 units
    _move_to(control, clock, hour + timedelta(hours=1, minutes=5))
    assert reporter.push().delivered == 1  # [hh:41, hh+1): 6 units
    return world, c, clock, reporter, hour, change


def test_a_cancellation_learned_after_the_period_end_nets_out_every_pushed_slot_after_it(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world, c, clock, reporter, hour, change = _cancel_before_a_period_end_world(
        pg_conninfo, stripe_client, control
    )
    _move_to(control, clock, hour + timedelta(hours=2, minutes=5))  # the webhook, 1 h 40 late
    _webhook(world, c.key, "power", "canceled", change)
    assert reporter.push().status == "ok"

    # the 8 units before the cancellation, and nothing after it (the period end's slot too)
    assert stripe_totals(control, world.event_name) == {c.stripe_id: Decimal(8)}
    (result,) = reporter.reconcile(hour.date(), "manual")
    assert result.discrepancies == []
    assert reporter.store.alerts(world.tenant_id) == []


def test_a_cancellation_learned_too_late_to_cancel_keeps_the_pushed_slots_and_alerts_once(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world, c, clock, reporter, hour, change = _cancel_before_a_period_end_world(
        pg_conninfo, stripe_client, control
    )
    _move_to(control, clock, hour + timedelta(hours=30))  # the webhook, a day late
    _webhook(world, c.key, "power", "canceled", change)
    assert reporter.push().status == "ok"

    # Stripe keeps both slots: the first bills the 3 units after the cancellation on the plan
    # (the alert), the second is stamped after the cancellation, where no invoice bills it
    assert stripe_totals(control, world.event_name) == {c.stripe_id: Decimal(17)}
    alerts = reporter.store.alerts(world.tenant_id, "open")
    assert [(a.kind, a.window_start, a.our_units) for a in alerts] == [
        ("split_after_push", change, Decimal(3))
    ]
    (result,) = reporter.reconcile(hour.date(), "manual")
    assert result.discrepancies == []


def test_a_cancellation_in_the_period_end_minute_learned_late_nets_out_the_slot_after_it(
    pg_conninfo, stripe_emulator, stripe_client
):
    """The cancellation's boundary (hh:40:10, minute-ceiled) is the period end's: it splits
    nothing, but the slot after it was pushed under the plan."""
    control = stripe_emulator.control
    world, c, clock, reporter, hour, change = _cancel_before_a_period_end_world(
        pg_conninfo, stripe_client, control, timedelta(minutes=40, seconds=10)
    )
    _move_to(control, clock, hour + timedelta(hours=2, minutes=5))
    _webhook(world, c.key, "power", "canceled", change)
    assert reporter.push().status == "ok"

    # the minute that holds the cancellation bills on the plan: the 11 units before the end
    assert stripe_totals(control, world.event_name) == {c.stripe_id: Decimal(11)}
    (result,) = reporter.reconcile(hour.date(), "manual")
    assert result.discrepancies == []
    assert reporter.store.alerts(world.tenant_id) == []


def test_a_boundary_learned_too_late_alerts_last_value_meters_by_their_billed_values(
    pg_conninfo, stripe_emulator, stripe_client
):
    """A max meter bills the period's maximum and a latest meter its last value: the pushed
    hour bills the values after the cancellation on the old side, and the alert carries what
    that side should bill and what it bills (hand-computed at 0.5 cents a unit); none for a
    max meter whose maximum the hour after the cancellation left as it was."""
    control = stripe_emulator.control
    world = make_world(
        pg_conninfo,
        stripe_client,
        n_customers=1,
        meters={"seats": "max", "level": "latest", "peak": "max"},
    )
    (c,) = world.customers.values()
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for())
    hour = floor_hour(c.period_start) + timedelta(hours=3)
    add_usage(world, c.key, hour - timedelta(minutes=50), 20, "seats")
    add_usage(world, c.key, hour - timedelta(minutes=50), 5, "level")
    _move_to(control, clock, hour + timedelta(minutes=5))
    assert reporter.push().status == "ok"  # the earlier hour; contexts recorded while on power

    add_usage(world, c.key, hour + timedelta(minutes=10), 12, "seats")
    add_usage(world, c.key, hour + timedelta(minutes=10), 8, "level")
    add_usage(world, c.key, hour + timedelta(minutes=10), 50, "peak")
    change = hour + timedelta(minutes=25)
    add_usage(world, c.key, hour + timedelta(minutes=40), 30, "seats")
    add_usage(world, c.key, hour + timedelta(minutes=40), 2, "level")
    add_usage(world, c.key, hour + timedelta(minutes=40), 40, "peak")  # below the 50 before
    _move_to(control, clock, hour + timedelta(hours=1, minutes=5))
    assert reporter.push().delivered == 3  # the whole hour of each meter
    _move_to(control, clock, hour + timedelta(hours=30))  # the webhook, a day late
    _webhook(world, c.key, "power", "canceled", change)
    assert reporter.push().status == "ok"

    alerts = reporter.store.alerts(world.tenant_id, "open")
    found = sorted(
        (a.kind, a.meter, a.window_start, a.our_units, a.stripe_units, a.difference, a.money_minor)
        for a in alerts
    )
    assert found == [
        # the last value before the change is 8 (4 cents), the hour pushed ends on 2 (1 cent)
        ("split_after_push", "level", change, Decimal(8), Decimal(2), Decimal(-6), Decimal(3)),
        # the maximum before the change is 20 (10 cents), the hour pushed raised it to 30 (15)
        ("split_after_push", "seats", change, Decimal(20), Decimal(30), Decimal(10), Decimal(5)),
    ]
    (result,) = reporter.reconcile(hour.date(), "manual")
    assert result.discrepancies == []


def test_a_plan_change_learned_too_late_alerts_last_value_meters_on_both_sides(
    pg_conninfo, stripe_emulator, stripe_client
):
    """Power bills 0.5 cents a unit, basic 0.2. The pushed hour bills the values after the
    change on power's side (see the test above); basic's period starts where the hour ends
    and should also bill them: its maximum over the values from the change on (seats 30
    where it holds 25; peak 40 where it holds none) and its last value (level 12 where it
    holds none)."""
    control = stripe_emulator.control
    meters = {"seats": "max", "level": "latest", "peak": "max"}
    world = make_world(pg_conninfo, stripe_client, n_customers=1, meters=meters)
    catalog = catalog_with(meters)
    catalog["plans"] = [*catalog["plans"], _basic(list(meters))]
    PostgresCatalogRepository(world.pool).apply(world.tenant_id, parse_catalog(catalog))
    (c,) = world.customers.values()
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock, settings_for())
    hour = floor_hour(c.period_start) + timedelta(hours=3)
    add_usage(world, c.key, hour - timedelta(minutes=50), 20, "seats")
    add_usage(world, c.key, hour - timedelta(minutes=50), 5, "level")
    _move_to(control, clock, hour + timedelta(minutes=5))
    assert reporter.push().status == "ok"  # the earlier hour; contexts recorded while on power

    add_usage(world, c.key, hour + timedelta(minutes=10), 12, "seats")
    add_usage(world, c.key, hour + timedelta(minutes=10), 8, "level")
    add_usage(world, c.key, hour + timedelta(minutes=10), 50, "peak")
    change = hour + timedelta(minutes=25)
    add_usage(world, c.key, hour + timedelta(minutes=40), 30, "seats")
    add_usage(world, c.key, hour + timedelta(minutes=40), 12, "level")
    add_usage(world, c.key, hour + timedelta(minutes=40), 40, "peak")
    _move_to(control, clock, hour + timedelta(hours=1, minutes=5))
    assert reporter.push().delivered == 3  # the whole hour of each meter
    add_usage(world, c.key, hour + timedelta(hours=2, minutes=10), 25, "seats")
    _move_to(control, clock, hour + timedelta(hours=30))  # the webhook, a day late
    _webhook(world, c.key, "basic", "active", change)
    assert reporter.push().status == "ok"

    alerts = reporter.store.alerts(world.tenant_id, "open")
    found = sorted(
        (a.window_start, a.meter, a.our_units, a.stripe_units, a.difference, a.money_minor)
        for a in alerts
    )
    after = hour + timedelta(hours=1)
    assert [a.kind for a in alerts] == ["split_after_push"] * 5
    assert found == [
        # power: last value 8 before the change (4 cents), the hour ends on 12 (6 cents)
        (change, "level", Decimal(8), Decimal(12), Decimal(4), Decimal(2)),
        # power: maximum 20 before the change (10 cents), 30 with the hour (15 cents)
        (change, "seats", Decimal(20), Decimal(30), Decimal(10), Decimal(5)),
        # basic: last value 12 (2.4 cents, 2), none held
        (after, "level", Decimal(12), Decimal(0), Decimal(-12), Decimal(2)),
        # basic: maximum 40 (8 cents), none held
        (after, "peak", Decimal(40), Decimal(0), Decimal(-40), Decimal(8)),
        # basic: maximum 30 (6 cents), 25 held (5 cents)
        (after, "seats", Decimal(30), Decimal(25), Decimal(-5), Decimal(1)),
    ]
