"""Invoices at subscription creation and their hosted pages, through the real SDK
(shared/STRIPE-BILLING.md, f and g): Stripe invoices the first period when a subscription is
created (paid, or open with the subscription `incomplete` when the card fails charges; $0 for a
trial), and a finalized invoice links its hosted page (`hosted_invoice_url`)."""

from __future__ import annotations

from typing import Any

import httpx
import stripe

from tests.fixtures.stripe import StripeEmulatorHandle

from . import support

SUCCESS = "http://app.test/done?session={CHECKOUT_SESSION_ID}"


def _plan(client: stripe.StripeClient) -> tuple[Any, Any]:
    return support.metered_plan(client, support.meter(client).id)


def _customer_with(client: stripe.StripeClient, card: str) -> Any:
    cus = client.v1.customers.create({"payment_method": card})
    method = client.v1.customers.payment_methods.list(cus.id).data[0]
    client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": method.id}})
    return cus


def _subscribe(client: stripe.StripeClient, customer: str, **extra: Any) -> Any:
    base, usage = _plan(client)
    items = [{"price": base.id, "quantity": 2}, {"price": usage.id}]
    return client.v1.subscriptions.create({"customer": customer, "items": items, **extra})


def test_creating_a_subscription_invoices_its_first_period_paid(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    cus = _customer_with(stripe_client, "pm_card_visa")
    sub = _subscribe(stripe_client, cus.id)
    (invoice,) = stripe_client.v1.invoices.list({"subscription": sub.id}).data
    assert sub.latest_invoice == invoice.id
    assert (invoice.billing_reason, invoice.status, invoice.amount_due) == (
        "subscription_create",
        "paid",
        1800,
    )
    (line,) = invoice.lines.data  # the licensed item in advance; metered usage is billed later
    item = sub["items"]["data"][0]
    assert (line.quantity, line.amount) == (2, 1800)
    assert invoice.period_start == invoice.period_end == sub.created  # nothing to look back on
    assert (line.period.start, line.period.end) == (
        item["current_period_start"],
        item["current_period_end"],
    )
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "active"
    kinds = [e["type"] for e in stripe_emulator.control.events()]
    assert kinds[-4:] == [
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
    ]


def test_a_card_that_fails_leaves_the_first_invoice_open_and_the_subscription_incomplete(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    cus = _customer_with(stripe_client, "pm_card_chargeCustomerFail")
    sub = _subscribe(stripe_client, cus.id)
    invoice = stripe_client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (invoice.status, invoice.attempt_count, invoice.next_payment_attempt) == (
        "open",
        1,
        None,
    )
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "incomplete"
    (failed,) = stripe_emulator.control.events("invoice.payment_failed")
    assert failed["data"]["object"]["id"] == invoice.id
    good = stripe_client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    stripe_client.v1.customers.update(
        cus.id, {"invoice_settings": {"default_payment_method": good.id}}
    )
    assert stripe_client.v1.invoices.pay(invoice.id).status == "paid"
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_a_trial_is_invoiced_for_nothing(stripe_client: stripe.StripeClient) -> None:
    cus = _customer_with(stripe_client, "pm_card_chargeCustomerFail")
    sub = _subscribe(stripe_client, cus.id, trial_period_days=14)
    invoice = stripe_client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (invoice.status, invoice.amount_due, invoice.billing_reason) == (
        "paid",
        0,
        "subscription_create",
    )
    assert [line.amount for line in invoice.lines.data] == [0]
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "trialing"


def test_checkout_makes_the_first_invoice_and_names_it(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    base, usage = _plan(stripe_client)
    session = stripe_client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "line_items": [{"price": base.id, "quantity": 1}, {"price": usage.id}],
            "success_url": SUCCESS,
            "customer_email": "jo@example.com",
        }
    )
    stripe_emulator.control.complete_checkout(session.id)
    done = stripe_client.v1.checkout.sessions.retrieve(session.id)
    invoice = stripe_client.v1.invoices.retrieve(str(done.invoice))
    assert invoice.parent is not None and invoice.parent.subscription_details is not None
    assert (invoice.parent.subscription_details.subscription, invoice.status) == (
        done.subscription,
        "paid",
    )


def test_a_finalized_invoice_links_its_hosted_page(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    cus = _customer_with(stripe_client, "pm_card_visa")
    sub = _subscribe(stripe_client, cus.id)
    draft = stripe_emulator.control.close_period(sub.id, finalize=False)
    assert (draft["hosted_invoice_url"], draft["invoice_pdf"]) == (None, None)
    first = stripe_client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert first.hosted_invoice_url == f"{stripe_emulator.url}/invoice/{first.id}"
    page = httpx.get(first.hosted_invoice_url)
    assert page.status_code == 200
    assert "18.00 USD" in page.text and ">paid<" in page.text
    assert httpx.get(f"{stripe_emulator.url}/invoice/{draft['id']}").status_code == 404


def test_the_hosted_page_pays_an_open_invoice_with_the_default_card(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    cus = _customer_with(stripe_client, "pm_card_chargeCustomerFail")
    sub = _subscribe(stripe_client, cus.id)
    url = str(stripe_client.v1.invoices.retrieve(str(sub.latest_invoice)).hosted_invoice_url)
    declined = httpx.post(url)
    assert declined.status_code == 402 and "declined" in declined.text
    good = stripe_client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    stripe_client.v1.customers.update(
        cus.id, {"invoice_settings": {"default_payment_method": good.id}}
    )
    paid = httpx.post(url, follow_redirects=True)
    assert paid.status_code == 200 and ">paid<" in paid.text
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "active"
