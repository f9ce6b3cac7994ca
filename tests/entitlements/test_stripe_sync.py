"""Catalog sync to Stripe (idempotent) and subscription sync through signed webhooks."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
import stripe

from meterline.postgres import open_pool
from meterline.stripe import CatalogSync, PostgresStripeObjectRepository
from tests.entitlements.catalogs import example_catalog
from tests.entitlements.conftest import WEBHOOK_SECRET, Api

pytestmark = pytest.mark.integration


def decision(api: Api, customer: str, feature: str) -> dict[str, object]:
    with api.client() as http:
        answer = http.get(f"/v1/customers/{customer}/entitlements/{feature}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def register(api: Api, **options: object) -> None:
    control = api.stripe.control
    control.add_webhook_endpoint(api.url + "/v1/stripe/webhook", secret=WEBHOOK_SECRET)
    if options:
        control.webhook_options(**options)


def settle(api: Api) -> None:
    api.stripe.control.wait_for_deliveries(timeout=30)
    api.clock.follow(api.stripe.control)


def test_catalog_sync_is_idempotent(api: Api) -> None:
    client = api.stripe.client()
    with open_pool(api.env["METERLINE_DATABASE_URL"], max_size=1) as pool:
        objects = PostgresStripeObjectRepository(pool)
        before = {(o.kind, o.key): o.stripe_id for o in objects.all(api.tenant_id)}
        report = CatalogSync(client, objects).sync(api.tenant_id, example_catalog())
        after = {(o.kind, o.key): o.stripe_id for o in objects.all(api.tenant_id)}
    assert not report.changed and before == after
    assert set(before) == {
        ("meter", "api_calls"),
        ("meter", "tokens"),
        ("product", "basic"),
        ("product", "power"),
        ("price", "basic"),
        ("price", "power"),
        ("metered_price", "power/api_calls"),
    }
    meters = client.v1.billing.meters.list({"limit": 100}).data
    assert sorted(m.event_name for m in meters) == [
        f"ml_{api.tenant_id}_api_calls",
        f"ml_{api.tenant_id}_tokens",
    ]
    assert {m.default_aggregation.formula for m in meters} == {"sum"}
    assert len(client.v1.prices.list({"limit": 100}).data) == 3
    assert len(client.v1.products.list({"limit": 100}).data) == 2
    metered = client.v1.prices.retrieve(
        after["metered_price", "power/api_calls"], {"expand": ["tiers"]}
    )
    assert (metered.billing_scheme, metered.tiers_mode) == ("tiered", "graduated")
    assert [(t.up_to, str(t.unit_amount_decimal)) for t in metered.tiers] == [
        (100_000, "0"),
        (None, "0.05"),
    ]


def test_changed_price_moves_the_lookup_key(api: Api) -> None:
    client = api.stripe.client()
    doc = example_catalog().to_document()
    doc["plans"][1]["price"]["amount"] = 1200
    doc["plans"][2]["metered_prices"]["api_calls"]["unit_amount_decimal"] = "0.04"
    with api.client("admin") as admin:
        answer = admin.put("/v1/admin/catalog", json=doc)
        assert answer.status_code == 200, answer.text
        assert any(
            line.startswith("updated") and "price basic" in line for line in answer.json()["stripe"]
        )
        assert any(
            "updated" in line and "power/api_calls" in line for line in answer.json()["stripe"]
        )
    new_id = api.price("basic")
    assert client.v1.prices.retrieve(new_id).unit_amount == 1200
    key = f"ml_{api.tenant_id}_power_api_calls"
    (tiered,) = client.v1.prices.list({"lookup_keys": [key], "expand": ["data.tiers"]}).data
    assert str(tiered.tiers[1].unit_amount_decimal) == "0.04"
    active = client.v1.prices.list({"active": True, "limit": 100}).data
    assert len(active) == 3


def test_plan_changes_through_webhooks_out_of_order_and_twice(api: Api) -> None:
    register(api, out_of_order_jitter_seconds=0.3, duplicate_rate=0.5)
    client = api.stripe.client()
    cus = api.customer("c1")
    sub = client.v1.subscriptions.create(
        {"customer": cus, "items": [{"price": api.price("basic")}]}
    )
    settle(api)
    d = decision(api, "c1", "api_calls")
    assert (d["plan"], d["limit"], d["subscription_status"]) == ("basic", 1000, "active")
    item = sub["items"]["data"][0]["id"]
    client.v1.subscriptions.update(sub.id, {"items": [{"id": item, "price": api.price("power")}]})
    settle(api)
    assert (decision(api, "c1", "export")["reason"], decision(api, "c1", "export")["plan"]) == (
        "included",
        "power",
    )
    power = decision(api, "c1", "api_calls")
    assert power["period"]["start"] == _iso(sub["items"]["data"][0]["current_period_start"])
    client.v1.subscriptions.update(sub.id, {"items": [{"id": item, "price": api.price("basic")}]})
    settle(api)
    d = decision(api, "c1", "export")
    assert (d["has_access"], d["reason"], d["plan"]) == (False, "not_in_plan", "basic")
    deliveries = api.stripe.control.deliveries()
    assert len(deliveries) > len({x["event_id"] for x in deliveries}), "no duplicate delivered"
    with open_pool(api.env["METERLINE_DATABASE_URL"], max_size=1) as pool, pool.connection() as c:
        stored = c.execute(
            "SELECT count(*), count(processed_at) FROM stripe_webhook_events"
        ).fetchone()
    assert stored is not None and stored[0] == stored[1] == len({x["event_id"] for x in deliveries})


def test_payment_failure_grace_then_fallback_then_recovery(api: Api) -> None:
    register(api, out_of_order_jitter_seconds=0.2, duplicate_rate=0.5)
    client = api.stripe.client()
    cus = api.customer("c2")
    sub = client.v1.subscriptions.create(
        {"customer": cus, "items": [{"price": api.price("power")}]}
    )
    settle(api)
    api.stripe.control.fail_payment(sub.id)
    settle(api)
    d = decision(api, "c2", "export")
    assert (d["has_access"], d["reason"], d["payment_state"]) == (True, "payment_grace", "grace")
    assert d["subscription_status"] == "past_due" and "grace_ends" in d
    api.clock.advance(8 * 86_400)
    after = decision(api, "c2", "export")
    assert (after["has_access"], after["reason"], after["plan"]) == (
        False,
        "subscription_inactive",
        "free",
    )
    calls = decision(api, "c2", "api_calls")
    assert (calls["plan"], calls["limit"], calls["payment_state"]) == ("free", 50, "fallback")
    invoice = client.v1.invoices.list({"subscription": sub.id, "status": "open"}).data[0]
    api.stripe.control.pay_invoice(invoice.id)
    settle(api)
    api.clock.advance(8 * 86_400)
    assert decision(api, "c2", "export")["reason"] == "included"


def test_unpaid_and_cancellation_fall_back_to_free(api: Api) -> None:
    register(api, duplicate_rate=0.5, out_of_order_jitter_seconds=0.2)
    client = api.stripe.client()
    cus = api.customer("c3")
    sub = client.v1.subscriptions.create(
        {"customer": cus, "items": [{"price": api.price("power")}]}
    )
    settle(api)
    api.stripe.control.fail_payment(sub.id, final=True)
    settle(api)
    d = decision(api, "c3", "export")
    assert (d["reason"], d["subscription_status"], d["plan"]) == (
        "subscription_inactive",
        "unpaid",
        "free",
    )
    cus4 = api.customer("c4")
    sub4 = client.v1.subscriptions.create(
        {"customer": cus4, "items": [{"price": api.price("power")}]}
    )
    settle(api)
    assert decision(api, "c4", "export")["reason"] == "included"
    client.v1.subscriptions.cancel(sub4.id)
    settle(api)
    d = decision(api, "c4", "api_calls")
    assert (d["plan"], d["limit"], d["subscription_status"]) == ("free", 50, "canceled")


def test_bad_signatures_and_stale_timestamps_get_400_and_change_nothing(api: Api) -> None:
    client = api.stripe.client()
    cus = api.customer("c5")
    sub = client.v1.subscriptions.create(
        {"customer": cus, "items": [{"price": api.price("power")}]}
    )
    event = {
        "id": "evt_forged",
        "object": "event",
        "type": "customer.subscription.created",
        "created": int(time.time()),
        "data": {"object": {"id": sub.id, "object": "subscription", "status": "active"}},
    }
    payload = orjson.dumps(event).decode()
    url = api.url + "/v1/stripe/webhook"
    forged = stripe.WebhookSignature.generate_signature_header(payload, "whsec_wrong")
    stale = stripe.WebhookSignature.generate_signature_header(
        payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 301
    )
    for header in (forged, stale, "garbage", None):
        headers = {"content-type": "application/json"}
        if header:
            headers["stripe-signature"] = header
        answer = httpx.post(url, content=payload, headers=headers)
        assert answer.status_code == 400, answer.text
    assert decision(api, "c5", "export")["reason"] == "no_subscription"
    with open_pool(api.env["METERLINE_DATABASE_URL"], max_size=1) as pool, pool.connection() as c:
        row = c.execute("SELECT count(*) FROM stripe_webhook_events").fetchone()
    assert row == (0,)
    good = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
    ok = httpx.post(url, content=payload, headers={"stripe-signature": good})
    assert ok.status_code == 200 and ok.json()["outcome"] == "applied"
    again = httpx.post(url, content=payload, headers={"stripe-signature": good})
    assert again.json()["outcome"] == "duplicate"
    assert decision(api, "c5", "export")["reason"] == "included"


def _iso(seconds: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
