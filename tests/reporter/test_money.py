"""An alert's money is what the invoice of its period is off by at the frozen price:
line(expected units) - line(units Stripe holds), never units times a marginal price."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterline.catalog.parse import parse_catalog
from meterline.catalog.repository import PostgresCatalogRepository
from tests.reporter.support import add_usage, catalog_with, emulator_clock, make_world, reporter_for

pytestmark = pytest.mark.integration
INCLUDED = {"included": 100, "unit_amount_decimal": "0.5"}
GRADUATED = {
    "tiers_mode": "graduated",
    "tiers": [
        {"up_to": 100, "unit_amount_decimal": "1"},
        {"up_to": "inf", "unit_amount_decimal": "0.5"},
    ],
}


def _priced(world, price: dict[str, Any], limit: int) -> None:
    """The tenant's power plan bills api_calls at `price` (its limit fitting the price)."""
    catalog = catalog_with({"api_calls": "sum"})
    power = next(p for p in catalog["plans"] if p["key"] == "power")
    power["metered_prices"] = {"api_calls": {**price, "currency": "usd"}}
    power["features"] = {
        "api_calls": {"limit": limit, "reset": "billing_period", "overage": "allow"}
    }
    PostgresCatalogRepository(world.pool).apply(world.tenant_id, parse_catalog(catalog))


@pytest.mark.parametrize(
    ("price", "money"),
    [
        (INCLUDED, Decimal(0)),  # 60 units of 100 included: the invoice is right either way
        (GRADUATED, Decimal(40)),  # line(60) - line(20) = 60 - 20, not 40 x 0.5
    ],
)
def test_a_missing_hour_is_priced_on_the_period_invoice(
    pg_conninfo, stripe_emulator, stripe_client, price, money
):
    control, emulator = stripe_emulator.control, stripe_emulator.emulator
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    _priced(world, price, limit=100)
    (c,) = world.customers.values()
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    day = (clock.now() - timedelta(days=1)).date()
    ten = datetime(day.year, day.month, day.day, 10, tzinfo=UTC)
    add_usage(world, c.key, ten + timedelta(minutes=5), 20)
    add_usage(world, c.key, ten + timedelta(hours=1, minutes=5), 40)
    assert reporter.push().delivered == 2
    lost = next(
        e for e in emulator.store.meter_events
        if e["customer"] == c.stripe_id and e["timestamp"] >= (ten + timedelta(hours=1)).timestamp()
    )  # fmt: skip
    lost["status"] = "dropped"

    assert len(reporter.reconcile(day, "manual")[0].discrepancies) == 1
    (alert,) = reporter.store.alerts(world.tenant_id, "open")
    assert (alert.kind, alert.difference, alert.money_minor) == (
        "missing_in_stripe",
        Decimal(-40),
        money,
    )
