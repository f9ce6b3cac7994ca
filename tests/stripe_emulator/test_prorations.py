"""Plan changes with prorations and invoice previews through the real SDK
(shared/STRIPE-BILLING.md, e): the preview of an upgrade charges, to the cent, what the upgrade
then invoices; the default keeps prorations for the next invoice; `none` drops them."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.fixtures.stripe import StripeEmulatorHandle

DAY = 86_400


def _plans(client: stripe.StripeClient) -> tuple[Any, Any]:
    product = client.v1.products.create({"name": "Plans"})
    basic, pro = (
        client.v1.prices.create(
            {
                "product": product.id,
                "currency": "usd",
                "unit_amount": amount,
                "recurring": {"interval": "month"},
            }
        )
        for amount in (1000, 2000)
    )
    return basic, pro


def _subscribed(client: stripe.StripeClient, card: str = "pm_card_visa") -> tuple[Any, Any, Any]:
    """A Basic subscription whose first invoice was paid; `card` is then the default card."""
    basic, pro = _plans(client)
    cus = client.v1.customers.create({"email": "jo@example.com", "payment_method": "pm_card_visa"})
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": basic.id}]})
    method = client.v1.payment_methods.attach(card, {"customer": cus.id})
    client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": method.id}})
    return sub, basic, pro


def _halfway(sub: Any) -> int:
    item = sub["items"].data[0]
    return int((item.current_period_start + item.current_period_end) // 2)


def test_an_upgrade_preview_charges_what_the_upgrade_invoices(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    sub, _, pro = _subscribed(stripe_client)
    item = sub["items"].data[0]
    at = _halfway(sub)
    stripe_emulator.control.advance_clock(at - stripe_emulator.control.now() - 60)
    change = {"items": [{"id": item.id, "price": pro.id}], "proration_date": at}
    preview = stripe_client.v1.invoices.create_preview(
        {
            "customer": sub.customer,
            "subscription": sub.id,
            "subscription_details": {**change, "proration_behavior": "always_invoice"},
        }
    )
    length = item.current_period_end - item.current_period_start
    remaining = item.current_period_end - at
    credit = round(1000 * remaining / length)  # half up; exact halves do not occur here
    debit = round(2000 * remaining / length)
    assert [line.amount for line in preview.lines.data] == [-credit, debit]
    assert all(line.parent.subscription_item_details.proration for line in preview.lines.data)
    assert preview.amount_due == debit - credit and preview.billing_reason == "upcoming"
    updated = stripe_client.v1.subscriptions.update(
        sub.id, {**change, "proration_behavior": "always_invoice"}
    )
    invoice = stripe_client.v1.invoices.retrieve(updated.latest_invoice)
    assert invoice.amount_due == preview.amount_due
    assert (invoice.status, invoice.billing_reason) == ("paid", "subscription_update")


def test_by_default_prorations_wait_for_the_next_invoice(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    sub, _, pro = _subscribed(stripe_client)
    item = sub["items"].data[0]
    at = _halfway(sub)
    stripe_emulator.control.advance_clock(at - stripe_emulator.control.now())
    preview = stripe_client.v1.invoices.create_preview(
        {
            "subscription": sub.id,
            "subscription_details": {
                "items": [{"id": item.id, "price": pro.id}],
                "proration_date": at,
            },
        }
    )
    # credit, debit, then the new price in advance for the next period
    amounts = [line.amount for line in preview.lines.data]
    assert len(amounts) == 3 and amounts[0] < 0 < amounts[1] and amounts[2] == 2000
    stripe_client.v1.subscriptions.update(
        sub.id, {"items": [{"id": item.id, "price": pro.id}], "proration_date": at}
    )
    invoice = stripe_emulator.control.close_period(sub.id)
    assert [line["amount"] for line in invoice["lines"]["data"]] == amounts
    assert invoice["amount_due"] == preview.amount_due


def test_no_prorations_and_quantity_changes(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    sub, _, _ = _subscribed(stripe_client)
    item = sub["items"].data[0]
    stripe_client.v1.subscriptions.update(
        sub.id,
        {"items": [{"id": item.id, "quantity": 3}], "proration_behavior": "none"},
    )
    invoice = stripe_emulator.control.close_period(sub.id)
    assert [line["amount"] for line in invoice["lines"]["data"]] == [3000]
    moved = stripe_client.v1.subscriptions.retrieve(sub.id)["items"].data[0]
    seats = stripe_client.v1.invoices.create_preview(
        {
            "subscription": sub.id,
            "subscription_details": {
                "items": [{"id": item.id, "quantity": 5}],
                "proration_behavior": "always_invoice",
                "proration_date": moved.current_period_end,
            },
        }
    )
    assert seats.amount_due == 0  # at the period's end nothing of it remains


def test_a_failing_card_leaves_the_proration_invoice_open(
    stripe_client: stripe.StripeClient,
) -> None:
    sub, _, pro = _subscribed(stripe_client, "pm_card_chargeCustomerFail")
    item = sub["items"].data[0]
    updated = stripe_client.v1.subscriptions.update(
        sub.id,
        {"items": [{"id": item.id, "price": pro.id}], "proration_behavior": "always_invoice"},
    )
    invoice = stripe_client.v1.invoices.retrieve(updated.latest_invoice)
    assert invoice.status == "open" and invoice.attempt_count == 1
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "past_due"


@pytest.mark.parametrize(
    ("details", "param"),
    [
        ({"proration_behavior": "sometimes"}, "subscription_details[proration_behavior]"),
        ({"proration_date": 1}, "subscription_details[proration_date]"),
    ],
)
def test_bad_previews_name_the_parameter(
    stripe_client: stripe.StripeClient, details: dict[str, Any], param: str
) -> None:
    sub, _, _ = _subscribed(stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.invoices.create_preview(
            {"subscription": sub.id, "subscription_details": details}
        )
    assert refused.value.param == param
