"""Plan changes through the real services and the emulator: an upgrade charges what its preview
showed, to the cent, and applies at once; a downgrade waits for the period end."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.billing.conftest import checkout, decision, register
from tests.entitlements.conftest import Api

pytestmark = pytest.mark.integration
DAY = 86_400


def _subscribe(api: Api, customer: str, plan: str) -> None:
    register(api)
    session = checkout(api, customer, plan=plan).json()
    api.stripe.control.complete_checkout(session["session_id"])
    _settle(api)
    assert decision(api, customer, "api_calls")["plan"] == plan


def _settle(api: Api) -> None:
    api.stripe.control.wait_for_deliveries(timeout=30)
    api.clock.follow(api.stripe.control)


def _advance(api: Api, seconds: float) -> None:
    api.stripe.control.advance_clock(seconds, close_due_periods=True)
    _settle(api)


def _post(api: Api, path: str, body: dict[str, Any]) -> Any:
    with api.client("billing") as http:
        return http.post(path, json=body)


def test_an_upgrade_charges_its_preview_to_the_cent_and_applies_at_once(api: Api) -> None:
    _subscribe(api, "u1", "basic")
    _advance(api, 11 * DAY + 3607)
    answer = _post(api, "/v1/customers/u1/plan/preview", {"plan": "power"})
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert (preview["direction"], preview["effective_at"]) == ("upgrade", preview["proration_date"])
    due = preview["due_today"]
    credit, debit = (line["amount"] for line in due["lines"])
    assert credit < 0 < debit and all(line["proration"] for line in due["lines"])
    assert due["amount_due"] == credit + debit
    nxt = preview["next_invoice"]
    assert nxt["amount_due"] == 4900 and nxt["date"] > preview["proration_date"]
    _advance(api, 2 * DAY)  # confirmed later: the preview's proration_date still rules
    body = {"plan": "power", "proration_date": preview["proration_date"]}
    changed = _post(api, "/v1/customers/u1/plan", body)
    assert changed.status_code == 200, changed.text
    invoice = changed.json()["invoice"]
    assert (invoice["amount_due"], invoice["status"]) == (due["amount_due"], "paid")
    assert decision(api, "u1", "api_calls")["plan"] == "power"
    d = decision(api, "u1", "export")
    assert (d["has_access"], d["plan"]) == (True, "power")


def test_a_downgrade_takes_effect_at_the_period_end_and_not_before(api: Api) -> None:
    _subscribe(api, "u2", "power")
    _advance(api, 5 * DAY)
    preview = _post(api, "/v1/customers/u2/plan/preview", {"plan": "basic"}).json()
    assert (preview["direction"], preview["due_today"]) == ("downgrade", None)
    assert preview["next_invoice"]["amount_due"] == 900
    changed = _post(api, "/v1/customers/u2/plan", {"plan": "basic"})
    assert changed.status_code == 200, changed.text
    end = changed.json()["effective_at"]
    assert changed.json()["direction"] == "downgrade" and changed.json()["invoice"] is None
    with api.client("billing") as http:
        pending = http.get("/v1/customers/u2/plan/pending").json()["pending_change"]
    assert pending == {"plan": "basic", "effective_at": end}
    _advance(api, end - api.stripe.control.now() - 2)
    assert decision(api, "u2", "api_calls")["plan"] == "power", "not before the period end"
    _advance(api, 3)
    deadline = time.monotonic() + 5
    while decision(api, "u2", "api_calls")["plan"] != "basic":
        assert time.monotonic() < deadline, "the downgrade did not apply at the period end"
        time.sleep(0.05)
    d = decision(api, "u2", "export")
    assert (d["has_access"], d["plan"]) == (False, "basic")
    with api.client("billing") as http:
        assert http.get("/v1/customers/u2/plan/pending").json()["pending_change"] is None


def test_a_pending_downgrade_can_be_dropped(api: Api) -> None:
    _subscribe(api, "u3", "power")
    assert _post(api, "/v1/customers/u3/plan", {"plan": "basic"}).status_code == 200
    with api.client("billing") as http:
        assert http.delete("/v1/customers/u3/plan/pending").status_code == 204
        assert http.get("/v1/customers/u3/plan/pending").json()["pending_change"] is None


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"plan": "gold"}, 422, "plan"),
        ({"plan": "free"}, 422, "plan"),
        ({"plan": "power", "proration_date": 5}, 422, "proration_date"),
        ({"plan": "power", "proration_date": "soon"}, 422, "proration_date"),
        ({"plan": "basic"}, 409, None),
    ],
)
def test_bad_changes_are_refused_naming_the_field(
    api: Api, body: dict[str, Any], status: int, field: str | None
) -> None:
    _subscribe(api, "u4", "basic")
    for path in ("/v1/customers/u4/plan/preview", "/v1/customers/u4/plan"):
        answer = _post(api, path, body)
        assert answer.status_code == status, answer.text
        if field is not None:
            assert [e["field"] for e in answer.json()["errors"]] == [field]
    assert decision(api, "u4", "api_calls")["plan"] == "basic"


def test_a_customer_without_a_subscription_is_sent_to_checkout(api: Api) -> None:
    answer = _post(api, "/v1/customers/nobody/plan/preview", {"plan": "power"})
    assert answer.status_code == 409 and "checkout" in answer.json()["message"]


@pytest.mark.parametrize(("policy", "open_after"), [("block", False), ("allow_until_reset", True)])
def test_usage_over_the_new_limits_follows_the_catalog_policy(
    api: Api, policy: str, open_after: bool
) -> None:
    doc = api.deps.catalogs.current(api.tenant_id)[1].to_document()  # type: ignore[index]
    doc["plan_changes"] = {"over_limit": policy}
    with api.client("admin") as http:
        http.put("/v1/admin/catalog", json=doc).raise_for_status()
    _subscribe(api, "u5", "power")
    changed = _post(api, "/v1/customers/u5/plan", {"plan": "basic"}).json()
    _advance(api, changed["effective_at"] - api.stripe.control.now() - 60)
    with api.client("ingest") as http:
        used = {"amount": 1500, "event_id": "u5-1"}
        answer = http.post("/v1/customers/u5/entitlements/api_calls/consume", json=used)
        assert answer.status_code == 200, answer.text
    _advance(api, 63)
    deadline = time.monotonic() + 5
    while decision(api, "u5", "api_calls")["plan"] != "basic":
        assert time.monotonic() < deadline, "the downgrade did not apply"
        time.sleep(0.05)
    d = decision(api, "u5", "api_calls")
    assert (d["has_access"], d["used"]) == (open_after, 1500)
    with api.client("admin") as http:
        grants = http.get("/v1/admin/customers/u5/grants").json()["data"]
    overrides = [(g["kind"], g["expires_at"]) for g in grants]
    assert overrides == ([("override", d["period"]["end"])] if open_after else [])
