"""PaymentMethods and SetupIntents with Stripe's test card ids, through the real SDK
(shared/STRIPE-BILLING.md, d), and the card Checkout saves."""

from __future__ import annotations

import pytest
import stripe

from tests.fixtures.stripe import StripeEmulatorHandle

from . import support


def test_a_setup_intent_attaches_the_card_and_it_becomes_the_default(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    cus = support.customer(stripe_client)
    intent = stripe_client.v1.setup_intents.create({"customer": cus.id, "usage": "off_session"})
    assert intent.status == "requires_payment_method"
    assert intent.client_secret.startswith(f"{intent.id}_secret_")
    done = stripe_client.v1.setup_intents.confirm(intent.id, {"payment_method": "pm_card_visa"})
    assert done.status == "succeeded" and done.payment_method.startswith("pm_")
    method = stripe_client.v1.payment_methods.retrieve(done.payment_method)
    assert (method.customer, method.card.brand, method.card.last4) == (cus.id, "visa", "4242")
    stripe_client.v1.customers.update(
        cus.id, {"invoice_settings": {"default_payment_method": method.id}}
    )
    fetched = stripe_client.v1.customers.retrieve(cus.id)
    assert fetched.invoice_settings.default_payment_method == method.id
    types = [e["type"] for e in stripe_emulator.control.events()]
    for expected in ("setup_intent.created", "setup_intent.succeeded", "payment_method.attached"):
        assert expected in types


def test_attach_list_set_default_and_detach(stripe_client: stripe.StripeClient) -> None:
    cus = support.customer(stripe_client)
    visa = stripe_client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    amex = stripe_client.v1.payment_methods.attach("pm_card_amex", {"customer": cus.id})
    listed = stripe_client.v1.customers.payment_methods.list(cus.id, {"type": "card"})
    assert {m.id for m in listed.data} == {visa.id, amex.id}
    by_filter = stripe_client.v1.payment_methods.list({"customer": cus.id, "type": "card"})
    assert {m.card.last4 for m in by_filter.data} == {"4242", "8431"}
    stripe_client.v1.customers.update(
        cus.id, {"invoice_settings": {"default_payment_method": amex.id}}
    )
    stripe_client.v1.payment_methods.detach(amex.id)
    assert (
        stripe_client.v1.customers.retrieve(cus.id).invoice_settings.default_payment_method is None
    )
    assert [m.id for m in stripe_client.v1.customers.payment_methods.list(cus.id).data] == [visa.id]
    with pytest.raises(stripe.InvalidRequestError):  # detaching is permanent
        stripe_client.v1.payment_methods.attach(amex.id, {"customer": cus.id})


def test_a_default_must_be_attached_to_that_customer(stripe_client: stripe.StripeClient) -> None:
    jo, al = support.customer(stripe_client), support.customer(stripe_client, "al@example.com")
    theirs = stripe_client.v1.payment_methods.attach("pm_card_visa", {"customer": al.id})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.customers.update(
            jo.id, {"invoice_settings": {"default_payment_method": theirs.id}}
        )
    assert refused.value.param == "invoice_settings[default_payment_method]"


@pytest.mark.parametrize(
    ("card", "code", "decline_code"),
    [
        ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ],
)
def test_decline_cards_cannot_be_attached_or_set_up(
    stripe_client: stripe.StripeClient, card: str, code: str, decline_code: str
) -> None:
    cus = support.customer(stripe_client)
    with pytest.raises(stripe.CardError) as refused:
        stripe_client.v1.payment_methods.attach(card, {"customer": cus.id})
    assert (refused.value.code, refused.value.error.decline_code) == (code, decline_code)
    intent = stripe_client.v1.setup_intents.create({"customer": cus.id})
    with pytest.raises(stripe.CardError):
        stripe_client.v1.setup_intents.confirm(intent.id, {"payment_method": card})
    failed = stripe_client.v1.setup_intents.retrieve(intent.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_setup_error.decline_code == decline_code
    assert stripe_client.v1.customers.payment_methods.list(cus.id).data == []


def test_the_charge_fail_card_attaches(stripe_client: stripe.StripeClient) -> None:
    cus = support.customer(stripe_client)
    method = stripe_client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", {"customer": cus.id}
    )
    assert (method.customer, method.card.last4) == (cus.id, "0341")


def test_a_setup_intent_can_be_canceled_once(stripe_client: stripe.StripeClient) -> None:
    intent = stripe_client.v1.setup_intents.create({})
    assert stripe_client.v1.setup_intents.cancel(intent.id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.setup_intents.cancel(intent.id)
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.setup_intents.confirm(intent.id, {"payment_method": "pm_card_visa"})


def test_checkout_saves_its_card_as_the_default(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    product = stripe_client.v1.products.create({"name": "Basic"})
    price = stripe_client.v1.prices.create(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 900,
            "recurring": {"interval": "month"},
        }
    )
    session = stripe_client.v1.checkout.sessions.create(
        {"mode": "subscription", "line_items": [{"price": price.id}], "success_url": "http://a/"}
    )
    done = stripe_emulator.control.complete_checkout(session.id, "jo@example.com", "pm_card_amex")
    customer = stripe_client.v1.customers.retrieve(done["customer"])
    method = stripe_client.v1.payment_methods.retrieve(
        customer.invoice_settings.default_payment_method
    )
    assert (method.card.brand, method.card.last4) == ("amex", "8431")
    setup = stripe_client.v1.checkout.sessions.create(
        {"mode": "setup", "customer": customer.id, "success_url": "http://a/", "currency": "usd"}
    )
    saved = stripe_emulator.control.complete_checkout(setup.id, payment_method="pm_card_visa")
    intent = stripe_client.v1.setup_intents.retrieve(saved["setup_intent"])
    assert intent.status == "succeeded"
    assert len(stripe_client.v1.customers.payment_methods.list(customer.id).data) == 2
