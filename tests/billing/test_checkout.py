"""Checkout through the real services and the emulator: plans become active, credit packs
become grants, once per session, however the webhooks come."""

from __future__ import annotations

import time

import pytest

from meterline.postgres import open_pool
from tests.billing.conftest import checkout, decision, register
from tests.entitlements.conftest import Api

pytestmark = pytest.mark.integration


def _wait_for_plan(api: Api, customer: str, plan: str, timeout: float) -> float:
    start = time.monotonic()
    while decision(api, customer, "api_calls")["plan"] != plan:
        assert time.monotonic() - start < timeout, f"{customer} is not on {plan}"
        time.sleep(0.02)
    return time.monotonic() - start


def test_plan_checkout_is_active_within_a_second_of_the_webhook(api: Api) -> None:
    # Only checkout.session.completed reaches the API: fulfilment alone activates the plan.
    register(api, enabled_events=["checkout.session.completed"])
    answer = checkout(api, "u1", plan="basic")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["kind"], body["item"]) == ("plan", "basic")
    assert body["url"].endswith(body["session_id"])
    assert decision(api, "u1", "api_calls")["plan"] == "free"
    api.stripe.control.complete_checkout(body["session_id"], payment_method="pm_card_visa")
    assert _wait_for_plan(api, "u1", "basic", timeout=5) < 1.0
    d = decision(api, "u1", "api_calls")
    assert (d["limit"], d["subscription_status"]) == (1000, "active")
    session = api.stripe.client().v1.checkout.sessions.retrieve(body["session_id"])
    assert session.metadata["meterline_item"] == "basic" and session.mode == "subscription"


def test_a_credit_pack_is_granted_once_when_webhooks_repeat_out_of_order(api: Api) -> None:
    register(api, duplicate_rate=1.0, out_of_order_jitter_seconds=0.3)
    sessions = [checkout(api, "u2", credit_pack="calls_10k").json() for _ in range(2)]
    for session in sessions:
        api.stripe.control.complete_checkout(session["session_id"])
    api.stripe.control.wait_for_deliveries(timeout=30)
    completed = api.stripe.control.deliveries(event_type="checkout.session.completed")
    assert len(completed) >= 4, "each session's webhook delivered twice"
    with api.client("admin") as http:
        grants = http.get("/v1/admin/customers/u2/grants").json()["data"]
    assert sorted((g["feature"], g["kind"], g["amount"]) for g in grants) == [
        ("api_calls", "credit", 10000),
        ("api_calls", "credit", 10000),
    ]
    assert {s["session_id"] for s in sessions} == {g["note"].split()[-1][:-1] for g in grants}
    assert decision(api, "u2", "api_calls")["limit"] == 50 + 2 * 10000
    with open_pool(api.env["METERLINE_DATABASE_URL"], max_size=1) as pool, pool.connection() as c:
        rows = c.execute("SELECT kind, item, cardinality(grant_ids) FROM checkout_fulfilments")
        assert sorted(rows.fetchall()) == [("credit_pack", "calls_10k", 1)] * 2


def test_a_customer_with_a_subscription_is_sent_to_plan_changes(api: Api) -> None:
    register(api, enabled_events=["checkout.session.completed"])
    first = checkout(api, "u3", plan="basic").json()
    api.stripe.control.complete_checkout(first["session_id"])
    _wait_for_plan(api, "u3", "basic", timeout=5)
    again = checkout(api, "u3", plan="power")
    assert again.status_code == 409, again.text
    assert "change the plan" in again.json()["message"]
    assert checkout(api, "u3", credit_pack="calls_10k").status_code == 201


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"plan": "gold"}, "plan", "unknown plan; priced plans: basic, power"),
        ({"plan": "free"}, "plan", "this plan has no price; priced plans: basic, power"),
        ({"credit_pack": "huge"}, "credit_pack", "unknown pack; packs: calls_10k"),
        ({"plan": "basic", "credit_pack": "calls_10k"}, "plan", "give exactly one of"),
        ({}, "plan", "give exactly one of"),
        ({"plan": "basic", "success_url": "ftp://x"}, "success_url", "pattern"),
        ({"plan": "Basic!"}, "plan", "unknown plan"),
        ({"plan": "basic", "extra": 1}, "extra", ""),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    api: Api, body: dict[str, object], field: str, message: str
) -> None:
    full = {"success_url": "https://a.example/ok", "cancel_url": "https://a.example/no", **body}
    with api.client("billing") as http:
        answer = http.post("/v1/customers/u4/checkout", json=full)
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert message in errors[0]["message"]
    assert api.stripe.client().v1.checkout.sessions.list().data == []


def test_the_billing_scope_or_admin_is_needed(api: Api) -> None:
    body = {"plan": "basic", "success_url": "https://a/ok", "cancel_url": "https://a/no"}
    with api.client("read") as http:
        assert http.post("/v1/customers/u5/checkout", json=body).status_code == 403
    with api.client("admin") as http:
        assert http.post("/v1/customers/u5/checkout", json=body).status_code == 201


def test_credit_packs_sync_to_stripe_idempotently(api: Api) -> None:
    client = api.stripe.client()
    pack = api.deps.stripe_objects.get(api.tenant_id, "pack_price", "calls_10k")
    assert pack is not None
    price = client.v1.prices.retrieve(pack.stripe_id)
    assert (price.unit_amount, price.currency, price.recurring, price.lookup_key) == (
        1500,
        "usd",
        None,
        f"ml_{api.tenant_id}_pack_calls_10k",
    )
    assert price.product == f"ml_{api.tenant_id}_pack_calls_10k"
    doc = api.deps.catalogs.current(api.tenant_id)[1].to_document()  # type: ignore[index]
    with api.client("admin") as http:
        same = http.put("/v1/admin/catalog", json=doc).json()["stripe"]
        assert [line for line in same if "pack" in line and line.startswith("unchanged")] == [
            f"unchanged product pack calls_10k (ml_{api.tenant_id}_pack_calls_10k)",
            f"unchanged price pack calls_10k ({pack.stripe_id})",
        ]
        doc["credit_packs"][0]["price"]["amount"] = 1800
        changed = http.put("/v1/admin/catalog", json=doc).json()["stripe"]
    assert any(line.startswith("updated   price pack calls_10k") for line in changed)
    moved = api.deps.stripe_objects.get(api.tenant_id, "pack_price", "calls_10k")
    assert moved is not None and client.v1.prices.retrieve(moved.stripe_id).unit_amount == 1800
    assert client.v1.prices.retrieve(pack.stripe_id).active is False
