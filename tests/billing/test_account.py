"""A subscriber's own billing through the real services and the emulator: cancel at the period
end ends the plan at the boundary, resume undoes it; payment methods; the portal link."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.billing.conftest import decision
from tests.billing.test_plan_changes import _advance, _subscribe
from tests.entitlements.conftest import Api

pytestmark = pytest.mark.integration


def _call(api: Api, verb: str, path: str, body: dict[str, Any] | None = None) -> Any:
    with api.client("billing") as http:
        return http.request(verb, path, json=body)


def _period_end(api: Api, customer: str) -> int:
    sub = api.deps.subscriptions.get(api.tenant_id, customer)
    assert sub is not None and sub.current_period_end is not None
    return int(sub.current_period_end.timestamp())


def _wait_for(api: Api, customer: str, plan: str) -> None:
    deadline = time.monotonic() + 5
    while decision(api, customer, "api_calls")["plan"] != plan:
        assert time.monotonic() < deadline, f"{customer} is not on {plan}"
        time.sleep(0.05)


def test_cancel_at_period_end_ends_the_plan_at_the_boundary(api: Api) -> None:
    _subscribe(api, "u1", "basic")
    answer = _call(api, "POST", "/v1/customers/u1/subscription/cancel")
    assert answer.status_code == 200, answer.text
    assert (answer.json()["cancel_at_period_end"], answer.json()["plan"]) == (True, "basic")
    end = _period_end(api, "u1")
    _advance(api, end - api.stripe.control.now() - 2)
    assert decision(api, "u1", "api_calls")["plan"] == "basic", "not before the boundary"
    _advance(api, 3)
    _wait_for(api, "u1", "free")
    assert decision(api, "u1", "api_calls")["subscription_status"] == "canceled"
    again = _call(api, "POST", "/v1/customers/u1/subscription/resume")
    assert again.status_code == 409


def test_resume_undoes_the_cancel(api: Api) -> None:
    _subscribe(api, "u2", "basic")
    assert _call(api, "POST", "/v1/customers/u2/subscription/cancel").status_code == 200
    answer = _call(api, "POST", "/v1/customers/u2/subscription/resume")
    assert answer.status_code == 200 and answer.json()["cancel_at_period_end"] is False
    end = _period_end(api, "u2")
    _advance(api, end - api.stripe.control.now() + 5)
    d = decision(api, "u2", "api_calls")
    assert (d["plan"], d["subscription_status"]) == ("basic", "active")
    assert _period_end(api, "u2") > end


def test_payment_methods_add_list_default_detach(api: Api) -> None:
    _subscribe(api, "u3", "basic")  # Checkout saved pm_card_visa as the default
    created = _call(api, "POST", "/v1/customers/u3/payment_methods/setup_intent")
    assert created.status_code == 201, created.text
    assert created.json()["client_secret"].startswith(created.json()["id"])
    client = api.stripe.client()
    client.v1.setup_intents.confirm(created.json()["id"], {"payment_method": "pm_card_mastercard"})
    cards = _call(api, "GET", "/v1/customers/u3/payment_methods").json()["data"]
    by_brand = {c["brand"]: c for c in cards}
    assert set(by_brand) == {"visa", "mastercard"} and by_brand["visa"]["default"] is True
    master = by_brand["mastercard"]["id"]
    path = f"/v1/customers/u3/payment_methods/{master}"
    assert _call(api, "POST", path + "/default").status_code == 204
    cards = _call(api, "GET", "/v1/customers/u3/payment_methods").json()["data"]
    assert [c["brand"] for c in cards if c["default"]] == ["mastercard"]
    visa = by_brand["visa"]["id"]
    assert _call(api, "DELETE", f"/v1/customers/u3/payment_methods/{visa}").status_code == 204
    cards = _call(api, "GET", "/v1/customers/u3/payment_methods").json()["data"]
    assert [(c["brand"], c["last4"], c["default"]) for c in cards] == [("mastercard", "4444", True)]


def test_a_card_of_another_customer_is_unknown(api: Api) -> None:
    _subscribe(api, "u4", "basic")
    api.customer("u5")
    (card,) = _call(api, "GET", "/v1/customers/u4/payment_methods").json()["data"]
    for verb, suffix in (("DELETE", ""), ("POST", "/default")):
        answer = _call(api, verb, f"/v1/customers/u5/payment_methods/{card['id']}{suffix}")
        assert answer.status_code == 404, answer.text
    bad = _call(api, "DELETE", "/v1/customers/u5/payment_methods/not-a-card")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "method"
    assert len(_call(api, "GET", "/v1/customers/u4/payment_methods").json()["data"]) == 1


def test_the_portal_link(api: Api) -> None:
    api.customer("u6")
    answer = _call(api, "POST", "/v1/customers/u6/portal", {"return_url": "https://a.example/b"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["url"].startswith(api.stripe.url)
    bad = _call(api, "POST", "/v1/customers/u6/portal", {"return_url": "javascript:alert(1)"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "return_url"


def test_cancel_without_a_subscription_is_a_409(api: Api) -> None:
    api.customer("u7")
    assert _call(api, "POST", "/v1/customers/u7/subscription/cancel").status_code == 409
