"""Shared builders for the emulator tests."""

from __future__ import annotations

from typing import Any

import stripe


def meter(client: stripe.StripeClient, event_name: str = "api_calls", formula: str = "sum") -> Any:
    """Create a billing meter."""
    return client.v1.billing.meters.create(
        {
            "display_name": event_name.replace("_", " ").title(),
            "event_name": event_name,
            "default_aggregation": {"formula": formula},
        }
    )


def customer(client: stripe.StripeClient, email: str = "jo@example.com") -> Any:
    """Create a customer."""
    return client.v1.customers.create({"email": email, "name": "Jo"})


def send(
    client: stripe.StripeClient,
    customer_id: str,
    value: str,
    identifier: str | None = None,
    timestamp: int | None = None,
    event_name: str = "api_calls",
) -> Any:
    """Send one v1 meter event."""
    params: dict[str, Any] = {
        "event_name": event_name,
        "payload": {"stripe_customer_id": customer_id, "value": value},
    }
    if identifier is not None:
        params["identifier"] = identifier
    if timestamp is not None:
        params["timestamp"] = timestamp
    return client.v1.billing.meter_events.create(params)


def metered_plan(client: stripe.StripeClient, meter_id: str, unit: str = "0.5") -> tuple[Any, Any]:
    """A product with a monthly licensed price (900) and a metered price bound to the meter."""
    product = client.v1.products.create({"name": "Power"})
    base = client.v1.prices.create(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 900,
            "recurring": {"interval": "month"},
            "lookup_key": "power_base",
        }
    )
    usage = client.v1.prices.create(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount_decimal": unit,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
            "lookup_key": "power_usage",
        }
    )
    return base, usage
