"""Checkout Sessions through the real SDK (shared/STRIPE-BILLING.md, b): subscription and
payment mode, validation, completion (control API and the hosted page), expiry."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from stripe_emulator import EmulatorControlError
from tests.fixtures.stripe import StripeEmulatorHandle

from . import support


def _pack(client: stripe.StripeClient) -> Any:
    product = client.v1.products.create({"name": "1,000 credits"})
    return client.v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 500})


def _plan(client: stripe.StripeClient) -> tuple[Any, Any]:
    return support.metered_plan(client, support.meter(client).id)


def _subscription_session(client: stripe.StripeClient, plan: tuple[Any, Any], **extra: Any) -> Any:
    base, usage = plan
    return client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "line_items": [{"price": base.id, "quantity": 1}, {"price": usage.id}],
            "success_url": "http://app.test/done?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "http://app.test/pricing",
            "client_reference_id": "acct-42",
            "metadata": {"plan": "power"},
            **extra,
        }
    )


def test_subscription_checkout_makes_the_subscription_and_sends_completed(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    base, usage = _plan(stripe_client)
    session = _subscription_session(stripe_client, (base, usage), customer_email="jo@example.com")
    assert (session.status, session.payment_status, session.mode) == (
        "open",
        "unpaid",
        "subscription",
    )
    assert session.url.startswith(stripe_emulator.url) and session.amount_total == 900
    items = stripe_client.v1.checkout.sessions.line_items.list(session.id)
    assert [i.price.id for i in items.data] == [base.id, usage.id]
    done = stripe_emulator.control.complete_checkout(session.id)
    assert (done["status"], done["payment_status"], done["url"]) == ("complete", "paid", None)
    fetched = stripe_client.v1.checkout.sessions.retrieve(session.id)
    sub = stripe_client.v1.subscriptions.retrieve(fetched.subscription)
    assert sub.customer == fetched.customer and sub.status == "active"
    assert sorted(i.price.id for i in sub["items"].data) == sorted([base.id, usage.id])
    assert stripe_client.v1.customers.retrieve(fetched.customer).email == "jo@example.com"
    (event,) = stripe_emulator.control.events("checkout.session.completed")
    obj = event["data"]["object"]
    assert (obj["id"], obj["subscription"], obj["client_reference_id"]) == (
        session.id,
        sub.id,
        "acct-42",
    )
    assert obj["metadata"] == {"plan": "power"}
    with pytest.raises(EmulatorControlError) as again:
        stripe_emulator.control.complete_checkout(session.id)
    assert again.value.status == 409


def test_payment_checkout_for_a_pack_keeps_the_customer(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    cus = support.customer(stripe_client)
    price = _pack(stripe_client)
    session = stripe_client.v1.checkout.sessions.create(
        {
            "mode": "payment",
            "customer": cus.id,
            "line_items": [{"price": price.id, "quantity": 2}],
            "success_url": "http://app.test/done",
        }
    )
    assert session.amount_total == 1000
    done = stripe_emulator.control.complete_checkout(session.id)
    assert done["customer"] == cus.id and done["payment_intent"].startswith("pi_")
    listed = stripe_client.v1.checkout.sessions.list({"customer": cus.id})
    assert [s.id for s in listed.data] == [session.id]
    (intent,) = stripe_emulator.control.events("payment_intent.succeeded")
    assert intent["data"]["object"]["amount"] == 1000


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"mode": "rent"}, "mode"),
        ({"mode": "payment"}, "line_items"),
        ({"mode": "payment", "line_items": [{"price": "recurring"}]}, "mode"),
        ({"mode": "subscription", "line_items": [{"price": "one_time"}]}, "mode"),
        (
            {"mode": "subscription", "line_items": [{"price": "metered", "quantity": 1}]},
            "line_items[0][quantity]",
        ),
        ({"mode": "payment", "line_items": [{"price": "price_missing"}]}, "line_items[0][price]"),
        (
            {"mode": "payment", "line_items": [{"price": "one_time"}], "expires_at": 60},
            "expires_at",
        ),
        (
            {"mode": "payment", "line_items": [{"price": "one_time"}], "customer": "cus_nope"},
            "customer",
        ),
    ],
)
def test_bad_sessions_are_refused_naming_the_parameter(
    stripe_client: stripe.StripeClient, params: dict[str, Any], param: str
) -> None:
    meter = support.meter(stripe_client)
    base, usage = support.metered_plan(stripe_client, meter.id)
    ids = {"recurring": base.id, "metered": usage.id, "one_time": _pack(stripe_client).id}
    for item in params.get("line_items", []):
        item["price"] = ids.get(item["price"], item["price"])
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.checkout.sessions.create(params)
    assert refused.value.param == param


def test_expiry_by_call_and_by_the_clock(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    plan = _plan(stripe_client)
    first = _subscription_session(stripe_client, plan)
    expired = stripe_client.v1.checkout.sessions.expire(first.id)
    assert (expired.status, expired.url) == ("expired", None)
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.checkout.sessions.expire(first.id)
    second = _subscription_session(stripe_client, plan)
    stripe_emulator.control.advance_clock(24 * 3600)
    assert stripe_client.v1.checkout.sessions.retrieve(second.id).status == "expired"
    with pytest.raises(EmulatorControlError) as late:
        stripe_emulator.control.complete_checkout(second.id)
    assert late.value.status == 409
    kinds = [
        e["data"]["object"]["id"]
        for e in stripe_emulator.control.events("checkout.session.expired")
    ]
    assert sorted(kinds) == sorted([first.id, second.id])


def test_the_hosted_page_pays_and_redirects_to_success_url(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    session = _subscription_session(stripe_client, _plan(stripe_client))
    with httpx.Client() as browser:
        page = browser.get(session.url)
        assert page.status_code == 200 and "Pay 9.00 USD" in page.text
        paid = browser.post(session.url, data={"email": "new@example.com"})
        assert paid.status_code == 303
        assert paid.headers["location"] == f"http://app.test/done?session={session.id}"
        assert browser.get(session.url).status_code == 404
    fetched = stripe_client.v1.checkout.sessions.retrieve(session.id)
    assert fetched.status == "complete"
    assert stripe_client.v1.customers.retrieve(fetched.customer).email == "new@example.com"
