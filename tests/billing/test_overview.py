"""`GET /v1/customers/{c}/billing` through the real services and the emulator."""

from __future__ import annotations

import httpx
import pytest

from tests.billing.test_account import _call
from tests.billing.test_plan_changes import _advance, _subscribe
from tests.entitlements.conftest import Api

pytestmark = pytest.mark.integration


def _overview(api: Api, customer: str) -> dict[str, object]:
    answer = _call(api, "GET", f"/v1/customers/{customer}/billing")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_dashboard_in_one_call(api: Api) -> None:
    _subscribe(api, "u1", "power")
    first_end = api.deps.subscriptions.get(api.tenant_id, "u1").current_period_end  # type: ignore[union-attr]
    _advance(api, first_end.timestamp() - api.stripe.control.now() + 5)  # one invoice closed
    with api.client("ingest") as http:
        consumed = http.post(
            "/v1/customers/u1/entitlements/api_calls/consume",
            json={"amount": 250, "event_id": "e-1"},
        )
        assert consumed.status_code == 200, consumed.text
    stripe_customer = api.deps.customers.get(api.tenant_id, "u1").stripe_customer_id  # type: ignore[union-attr]
    api.stripe.client().v1.billing.meter_events.create(
        {
            "event_name": f"ml_{api.tenant_id}_api_calls",
            "payload": {"stripe_customer_id": stripe_customer, "value": "120000"},
        }
    )
    assert _call(api, "POST", "/v1/customers/u1/plan", {"plan": "basic"}).status_code == 200
    assert _call(api, "POST", "/v1/customers/u1/subscription/cancel").status_code == 200
    view = _overview(api, "u1")
    assert view["plan"] == "power"
    sub = view["subscription"]
    assert isinstance(sub, dict) and (sub["status"], sub["cancel_at_period_end"]) == (
        "active",
        True,
    )
    assert view["pending_change"] is None, "a cancel drops the scheduled downgrade"
    features = {f["feature"]: f for f in view["features"]}  # type: ignore[attr-defined]
    calls = features["api_calls"]
    assert (calls["feature"], calls["used"], calls["limit"]) == ("api_calls", 250, 100000)
    upcoming = view["upcoming_invoice"]
    assert isinstance(upcoming, dict)
    assert upcoming["metered_so_far"] == 20000 * 5 // 100  # 120,000 calls, 100,000 included
    assert upcoming["date"] == int(
        api.deps.subscriptions.get(api.tenant_id, "u1").current_period_end.timestamp()  # type: ignore[union-attr]
    )
    invoices = view["invoices"]
    # the renewal, then the first period (invoiced when the subscription was made)
    assert isinstance(invoices, list) and [i["amount_due"] for i in invoices] == [4900, 4900]
    assert set(invoices[0]) >= {"hosted_invoice_url", "status", "created"}
    for invoice in invoices:  # each links its hosted page
        assert invoice["hosted_invoice_url"] == f"{api.stripe.url}/invoice/{invoice['id']}"
        assert httpx.get(invoice["hosted_invoice_url"]).status_code == 200
    assert view["default_payment_method"] == {
        "id": view["default_payment_method"]["id"],  # type: ignore[index]
        "brand": "visa",
        "last4": "4242",
    }


def test_the_pending_downgrade_is_shown(api: Api) -> None:
    _subscribe(api, "u2", "power")
    changed = _call(api, "POST", "/v1/customers/u2/plan", {"plan": "basic"}).json()
    assert _overview(api, "u2")["pending_change"] == {
        "plan": "basic",
        "effective_at": changed["effective_at"],
    }


def test_a_customer_without_stripe_and_an_unknown_one(api: Api) -> None:
    with api.client("admin") as http:
        http.post("/v1/admin/customers", json={"id": "u3"}).raise_for_status()
    view = _overview(api, "u3")
    assert (view["plan"], view["subscription"], view["upcoming_invoice"]) == ("free", None, None)
    assert (view["invoices"], view["default_payment_method"]) == ([], None)
    assert _call(api, "GET", "/v1/customers/nobody/billing").status_code == 404
