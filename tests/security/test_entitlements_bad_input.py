"""Bad input to the entitlements API answers a 4xx naming the field, never a 5xx.

Each probe is one the security review sent (issue 21, items 6 and 10) against a real server on
real Postgres, Redis and the Stripe emulator.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest
import stripe

from tests.entitlements.conftest import WEBHOOK_SECRET, Api

pytestmark = pytest.mark.integration

USAGE = "/v1/usage"
QUERY = {"meter": "api_calls", "window": "hour"}


def fields(answer: httpx.Response) -> set[str]:
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    return {e["field"] for e in answer.json().get("errors", [])}


def assert_refused(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 422, (answer.status_code, answer.text)
    assert field in fields(answer), answer.text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/a%00b/entitlements",
        "/v1/customers/a%00b/entitlements/api_calls",
        "/v1/customers/a%1Fb/entitlements/api_calls",
    ],
)
def test_a_control_character_in_a_checked_customer_id_is_refused(api: Api, path: str) -> None:
    with api.client() as http:
        assert_refused(http.get(path), "customer")


def test_a_control_character_in_a_consumed_customer_id_is_refused(api: Api) -> None:
    with api.client("ingest") as http:
        answer = http.post(
            "/v1/customers/a%00b/entitlements/api_calls/consume",
            json={"amount": 1, "event_id": "e1"},
        )
    assert_refused(answer, "customer")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/admin/customers/a%00b",
        "/v1/admin/customers/a%00b/grants",
    ],
)
def test_a_control_character_in_an_admin_customer_path_is_refused(api: Api, path: str) -> None:
    with api.client("admin") as http:
        assert_refused(http.get(path), "customer")


def test_a_control_character_in_after_is_refused(api: Api) -> None:
    with api.client("admin") as http:
        assert_refused(http.get("/v1/admin/customers", params={"after": "a\x00"}), "after")


@pytest.mark.parametrize("field", ["id", "name", "email"])
def test_a_nul_in_a_new_customer_is_refused(api: Api, field: str) -> None:
    body = {"id": "c1", field: "x\x00y"}
    with api.client("admin") as http:
        answer = http.post("/v1/admin/customers", json=body)
    assert_refused(answer, field)
    assert "must not contain control characters" in answer.text


@pytest.mark.parametrize("customer", ["a\u200bb", "line\u2028break", "bidi\u202e"])
def test_a_customer_its_events_could_not_carry_is_refused(api: Api, customer: str) -> None:
    """The admin API and ingest apply one character rule to customer ids, so no customer is
    created whose every event ingest would refuse."""
    with api.client("admin") as http:
        answer = http.post("/v1/admin/customers", json={"id": customer})
    assert_refused(answer, "id")
    assert "category" in answer.text


def test_a_nul_in_a_grant_note_is_refused(api: Api) -> None:
    api.customer("c1")
    grant = {"feature": "api_calls", "kind": "credit", "amount": 5, "note": "x\x00"}
    with api.client("admin") as http:
        assert_refused(http.post("/v1/admin/customers/c1/grants", json=grant), "note")


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00", "1969-12-31T23:59:59Z"]
)
def test_grant_times_out_of_range_are_refused(api: Api, when: str) -> None:
    api.customer("c1")
    grant = {"feature": "api_calls", "kind": "credit", "amount": 5, "expires_at": when}
    with api.client("admin") as http:
        assert_refused(http.post("/v1/admin/customers/c1/grants", json=grant), "expires_at")


def test_a_nul_in_a_usage_customer_is_refused(api: Api) -> None:
    params = {"customer": "a\x00", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
    with api.client() as http:
        assert_refused(http.get(USAGE, params={**QUERY, **params}), "customer")


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("0001-01-01T00:00:00+01:00", "2026-01-01T00:00:00Z", "from"),
        ("9999-12-31T20:00:00Z", "9999-12-31T23:59:59-05:00", "to"),
    ],
)
def test_usage_times_out_of_range_are_refused(api: Api, start: str, end: str, field: str) -> None:
    with api.client() as http:
        assert_refused(http.get(USAGE, params={**QUERY, "from": start, "to": end}), field)


def test_a_manual_period_that_ends_before_it_starts_is_refused(api: Api) -> None:
    api.customer("c1")
    body = {
        "plan": "basic",
        "current_period_start": "2026-02-01T00:00:00Z",
        "current_period_end": "2026-01-01T00:00:00Z",
    }
    with api.client("admin") as http:
        answer = http.put("/v1/admin/customers/c1/subscription", json=body)
        assert_refused(answer, "current_period_end")
        assert "after" in answer.text


def test_trailing_slash_redirects_do_not_reflect_the_host(api: Api) -> None:
    with api.client() as http:
        answer = http.get("/v1/usage/", headers={"host": "evil.example"})
    assert "evil.example" not in answer.headers.get("location", "")
    assert answer.status_code < 500


def _signed(api: Api, body: bytes) -> httpx.Response:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), WEBHOOK_SECRET)
    return httpx.post(
        api.url + "/v1/stripe/webhook",
        content=body,
        headers={"stripe-signature": header, "content-type": "application/json"},
        timeout=30,
    )


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "evt_bad",
        "object": "event",
        "type": "customer.subscription.updated",
        "created": int(time.time()),
        "data": {"object": {"id": "sub_x", "object": "subscription"}},
    }
    return {**event, **overrides}


MALFORMED = {
    "array": b"[]",
    "no_data": orjson.dumps({k: v for k, v in _event().items() if k != "data"}),
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "object_without_id": orjson.dumps(_event(data={"object": {"object": "subscription"}})),
    "nul_in_id": orjson.dumps(_event(id="evt_\x00")),
    "invoice_parent_not_a_mapping": orjson.dumps(
        _event(type="invoice.paid", data={"object": {"id": "in_1", "parent": "x"}})
    ),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_signed_but_malformed_webhook_is_a_400_and_kept(api: Api, kind: str) -> None:
    body = MALFORMED[kind]
    answer = _signed(api, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_webhook"
    again = _signed(api, body)
    assert again.status_code == 400
    kept = api.deps.subscription_sync.rejected()
    assert len(kept) == 1 and kept[0].attempts == 2 and kept[0].reason
    assert kept[0].size == len(body)


def test_a_catalog_nested_5000_deep_is_refused(api: Api) -> None:
    deep = "meters: " + "[" * 5000 + "]" * 5000 + "\n"
    with api.client("admin") as http:
        answer = http.put(
            "/v1/admin/catalog", content=deep, headers={"content-type": "application/yaml"}
        )
    assert answer.status_code == 422, answer.text
    assert "nest" in answer.text


def test_a_stripe_subscription_whose_period_ends_before_it_starts_is_refused(api: Api) -> None:
    cus = api.customer("c5")
    sub = api.stripe.client().v1.subscriptions.create(
        {"customer": cus, "items": [{"price": api.price("power")}]}
    )
    item = api.stripe.emulator.store.get("subscription", sub.id)["items"]["data"][0]
    item["current_period_end"] = item["current_period_start"] - 86_400
    body = orjson.dumps(_event(id="evt_backwards", data={"object": {"id": sub.id}}))
    answer = _signed(api, body)
    assert answer.status_code == 400, answer.text
    assert "period ends" in answer.json()["message"]
    with api.client() as http:
        check = http.get("/v1/customers/c5/entitlements/export").json()
    assert check["reason"] == "no_subscription"
    kept = api.deps.subscription_sync.rejected()
    assert [k.event_id for k in kept] == ["evt_backwards"]


def test_without_a_webhook_secret_every_delivery_is_refused(api: Api) -> None:
    api.deps.webhook_secret = None
    header = stripe.WebhookSignature.generate_signature_header("{}", "")
    answer = httpx.post(
        api.url + "/v1/stripe/webhook", content=b"{}", headers={"stripe-signature": header}
    )
    assert answer.status_code == 404 and "METERLINE_STRIPE_WEBHOOK_SECRET" in answer.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/admin/customers", {"id": "x\x00"}),
        ("GET", "/v1/usage?meter=api_calls&from=nope&to=nope", None),
        ("POST", "/v1/customers/c1/entitlements/api_calls/consume", {"amount": "five"}),
    ],
)
def test_a_request_without_a_valid_key_gets_401_before_any_validation(
    api: Api, method: str, path: str, body: object
) -> None:
    """An anonymous caller learns nothing of how input is validated: 401 comes first."""
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for headers in ({}, {"Authorization": "Bearer mlk_not_a_key"}):
            answer = http.request(method, path, json=body, headers=headers)
            assert answer.status_code == 401, (path, headers, answer.text)
