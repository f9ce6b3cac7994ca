"""Billing Portal sessions through the real SDK (shared/STRIPE-BILLING.md, c)."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.fixtures.stripe import StripeEmulatorHandle

from . import support


def test_a_portal_session_shows_the_subscriptions_and_links_back(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    cus = support.customer(stripe_client)
    base, _ = support.metered_plan(stripe_client, support.meter(stripe_client).id)
    sub = stripe_client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": base.id}]})
    session = stripe_client.v1.billing_portal.sessions.create(
        {
            "customer": cus.id,
            "return_url": "http://app.test/billing",
            "flow_data": {"type": "payment_method_update"},
        }
    )
    assert session.id.startswith("bps_") and session.flow.type == "payment_method_update"
    page = httpx.get(session.url)
    assert page.status_code == 200 and sub.id in page.text
    assert 'href="http://app.test/billing"' in page.text
    assert [e["type"] for e in stripe_emulator.control.events("billing_portal.session.created")]
    stripe_emulator.control.advance_clock(301)
    assert httpx.get(session.url).status_code == 404


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "customer"),
        ({"customer": "cus_nope"}, "customer"),
        ({"customer": "CUS", "flow_data": {"type": "teleport"}}, "flow_data[type]"),
    ],
)
def test_bad_portal_sessions_name_the_parameter(
    stripe_client: stripe.StripeClient, params: dict[str, object], param: str
) -> None:
    if params.get("customer") == "CUS":
        params["customer"] = support.customer(stripe_client).id
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.billing_portal.sessions.create(params)  # type: ignore[arg-type]
    assert refused.value.param == param
