"""The Stripe customer made for a Meterline customer, through the SDK and the emulator."""

from __future__ import annotations

import stripe

from meterline.entitlements import MemoryCustomerRepository
from meterline.stripe.subscriptions import ensure_stripe_customer


def test_any_customer_id_makes_one_stripe_customer(stripe_client: stripe.StripeClient) -> None:
    """The Idempotency-Key is an HTTP header (latin-1): a customer id outside it (Meterline
    allows any printable text) must not reach it raw. Found by Schemathesis as a 500."""
    customers = MemoryCustomerRepository()
    ids = ["plain", "ü-\U000c15ae-顧客", "x" * 128]
    for customer in ids:
        customers.create(1, customer, None, None)
    made = [ensure_stripe_customer(stripe_client, customers, 1, c) for c in ids]
    assert len(set(made)) == len(ids)
    again = MemoryCustomerRepository()
    again.create(1, ids[1], None, None)  # a retry before the id was stored: the same customer
    assert ensure_stripe_customer(stripe_client, again, 1, ids[1]) == made[1]
    fetched = stripe_client.v1.customers.retrieve(made[1])
    assert fetched.metadata["meterline_customer"] == ids[1]
