"""Automatic payment retries through the real SDK (shared/STRIPE-BILLING.md, f): a card that
fails charges walks the retry schedule on the emulator's clock to `unpaid` (or `canceled`); a
working card set as the default in the meantime is charged at the next retry."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorConfig, EmulatorControl, EmulatorServer
from tests.fixtures.stripe import StripeEmulatorHandle

DAY = 86_400
SCHEDULE = (3.0, 5.0, 6.0, 7.0)  # EmulatorConfig's default


def _failing_subscription(client: stripe.StripeClient) -> tuple[Any, Any]:
    product = client.v1.products.create({"name": "Basic"})
    price = client.v1.prices.create(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 900,
            "recurring": {"interval": "month"},
        }
    )
    cus = client.v1.customers.create({"payment_method": "pm_card_visa"})
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    # the first invoice is paid at creation; the card then on file fails the renewals
    card = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": cus.id})
    client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": card.id}})
    return cus, sub


def test_a_failing_card_walks_the_retry_schedule_to_unpaid(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    control = stripe_emulator.control
    _, sub = _failing_subscription(stripe_client)
    invoice = control.close_period(sub.id)  # the renewal is charged automatically, and fails
    for attempt, days in enumerate(SCHEDULE, start=1):
        seen = stripe_client.v1.invoices.retrieve(invoice["id"])
        assert (seen.status, seen.attempt_count) == ("open", attempt)
        assert seen.next_payment_attempt == pytest.approx(control.now() + days * DAY, abs=2)
        assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "past_due"
        control.advance_clock(days * DAY - 60)
        assert stripe_client.v1.invoices.retrieve(invoice["id"]).attempt_count == attempt
        control.advance_clock(60)
    spent = stripe_client.v1.invoices.retrieve(invoice["id"])
    assert (spent.attempt_count, spent.next_payment_attempt) == (len(SCHEDULE) + 1, None)
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "unpaid"
    failures = control.events("invoice.payment_failed")
    assert [e["data"]["object"]["attempt_count"] for e in failures] == [1, 2, 3, 4, 5]


def test_a_new_default_card_is_charged_at_the_next_retry(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    control = stripe_emulator.control
    cus, sub = _failing_subscription(stripe_client)
    invoice = control.close_period(sub.id)
    with pytest.raises(stripe.CardError):  # paying by hand with the same card fails too
        stripe_client.v1.invoices.pay(invoice["id"])
    assert stripe_client.v1.invoices.retrieve(invoice["id"]).attempt_count == 1
    visa = stripe_client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    stripe_client.v1.customers.update(
        cus.id, {"invoice_settings": {"default_payment_method": visa.id}}
    )
    control.advance_clock(SCHEDULE[0] * DAY)
    paid = stripe_client.v1.invoices.retrieve(invoice["id"])
    assert (paid.status, paid.attempt_count, paid.next_payment_attempt) == ("paid", 2, None)
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_spent_retries_can_cancel_instead() -> None:
    config = EmulatorConfig(payment_retry_days=(1.0,), final_payment_failure="canceled")
    with EmulatorServer(config) as server, EmulatorControl(server.url) as control:
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": server.url}, max_network_retries=0
        )
        _, sub = _failing_subscription(client)
        control.close_period(sub.id)
        control.advance_clock(DAY)
        assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_bad_retry_settings_are_refused() -> None:
    problems = EmulatorConfig(payment_retry_days=(0.0,), final_payment_failure="shrug").validate()
    assert len(problems) == 2
