"""Prices as Stripe computes them: the example catalog through the sync and the emulator."""

from __future__ import annotations

from pathlib import Path

import stripe

from meterline.catalog import MemoryCatalogRepository, load_catalog
from meterline.stripe.catalog_sync import (
    CatalogSync,
    MemoryStripeObjectRepository,
    apply_and_sync,
    meter_event_name,
    price_lookup_key,
)
from tests.fixtures.stripe import StripeEmulatorHandle

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"
TENANT = 7


def _power_invoice(
    client: stripe.StripeClient, emulator: StripeEmulatorHandle, calls: str
) -> dict[str, object]:
    """Apply the example catalog, subscribe a customer to Power, send `calls`, close the period."""
    sync = CatalogSync(client, MemoryStripeObjectRepository())
    apply_and_sync(MemoryCatalogRepository(), sync, TENANT, load_catalog(EXAMPLE))
    prices = client.v1.prices.list(
        {"lookup_keys": [price_lookup_key(TENANT, "power", m) for m in (None, "api_calls")]}
    ).data
    customer = client.v1.customers.create({"email": "power@example.com"})
    items = [{"price": price.id} for price in prices]
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": items})
    client.v1.billing.meter_events.create(
        {
            "event_name": meter_event_name(TENANT, "api_calls"),
            "payload": {"stripe_customer_id": customer.id, "value": calls},
        }
    )
    return emulator.control.close_period(sub.id)


def test_usage_inside_the_included_calls_is_invoiced_the_base_price_alone(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    invoice = _power_invoice(stripe_client, stripe_emulator, "49")
    assert invoice["amount_due"] == 4900


def test_each_call_past_the_included_costs_five_hundredths_of_a_cent(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    invoice = _power_invoice(stripe_client, stripe_emulator, "100049")
    assert invoice["amount_due"] == 4900 + 2  # 49 x 0.05 = 2.45 cents, rounded half-up per line
    invoice = _power_invoice(stripe_client, stripe_emulator, "100070")
    assert invoice["amount_due"] == 4900 + 4  # 70 x 0.05 = 3.5 cents -> 4
