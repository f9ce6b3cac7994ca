"""The entitlements API over HTTP against real Postgres, Redis, the broker and the emulator."""

from __future__ import annotations

import uuid

import pytest

from tests.entitlements.conftest import Api

pytestmark = pytest.mark.integration


def eid() -> str:
    return f"evt-{uuid.uuid4().hex}"


def test_decisions_on_the_default_plan(api: Api) -> None:
    with api.client() as http:
        one = http.get("/v1/customers/c1/entitlements/api_calls")
        assert one.status_code == 200, one.text
        body = one.json()
        assert body["reason"] == "within_limit" and body["plan"] == "free"
        assert (body["limit"], body["used"], body["remaining"]) == (50, 0, 50)
        assert set(body["period"]) == {"start", "end"}
        every = http.get("/v1/customers/c1/entitlements").json()
        reasons = {d["feature"]: d["reason"] for d in every["entitlements"]}
        assert reasons == {
            "api_calls": "within_limit",
            "tokens": "no_subscription",
            "export": "no_subscription",
        }


def test_consume_until_the_weekly_limit_then_refuse(api: Api) -> None:
    with api.client("ingest") as http:
        first = http.post(
            "/v1/customers/c1/entitlements/api_calls/consume", json={"amount": 30, "event_id": "e1"}
        )
        assert first.status_code == 200, first.text
        assert first.json()["granted"] is True and first.json()["used"] == 30
        again = http.post(
            "/v1/customers/c1/entitlements/api_calls/consume", json={"amount": 30, "event_id": "e1"}
        )
        assert again.json() == first.json()
        over = http.post(
            "/v1/customers/c1/entitlements/api_calls/consume", json={"amount": 21, "event_id": "e2"}
        )
        assert over.status_code == 403
        assert over.json()["granted"] is False and over.json()["reason"] == "limit_exceeded"
        fits = http.post(
            "/v1/customers/c1/entitlements/api_calls/consume", json={"amount": 20, "event_id": "e3"}
        )
        assert fits.status_code == 200 and fits.json()["remaining"] == 0
        retried = http.post(
            "/v1/customers/c1/entitlements/api_calls/consume", json={"amount": 1, "event_id": "e2"}
        )
        assert retried.status_code == 403 and retried.json() == over.json()
    with api.client() as http:
        check = http.get("/v1/customers/c1/entitlements/api_calls").json()
        assert (check["has_access"], check["reason"], check["used"]) == (
            False,
            "limit_exceeded",
            50,
        )


def test_scopes_and_bad_input(api: Api) -> None:
    with api.client() as read:
        consume = read.post(
            "/v1/customers/c1/entitlements/api_calls/consume", json={"amount": 1, "event_id": "x"}
        )
        assert consume.status_code == 403 and consume.json()["error"] == "forbidden"
        assert read.get("/v1/admin/customers").status_code == 403
        assert read.get("/v1/customers/c1/entitlements/nope").status_code == 404
        assert read.get("/v1/customers/c1/entitlements/api_calls?amount=-1").status_code == 422
    with api.client("ingest") as ingest:
        bad = ingest.post(
            "/v1/customers/c1/entitlements/api_calls/consume", json={"amount": "x", "event_id": ""}
        )
        assert bad.status_code == 422
        fields = {e["field"] for e in bad.json()["errors"]}
        assert fields == {"amount", "event_id"}
        raw = ingest.post(
            "/v1/customers/c1/entitlements/api_calls/consume",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert raw.status_code == 422
        boolean = ingest.post(
            "/v1/customers/c1/entitlements/export/consume", json={"amount": 1, "event_id": "b"}
        )
        assert boolean.status_code == 422
    import httpx

    assert httpx.get(api.url + "/v1/customers/c1/entitlements").status_code == 401
    wrong = {"Authorization": "Bearer mlk_nope"}
    assert httpx.get(api.url + "/v1/customers/c1/entitlements", headers=wrong).status_code == 401


def test_admin_customers_plans_grants_and_keys(api: Api) -> None:
    with api.client("admin") as admin:
        assert (
            admin.post("/v1/admin/customers", json={"id": "c9", "name": "Nine"}).status_code == 201
        )
        assert admin.post("/v1/admin/customers", json={"id": "c9"}).status_code == 409
        lifetime = admin.put(
            "/v1/admin/customers/c9/subscription", json={"plan": "power", "source": "lifetime"}
        )
        assert lifetime.status_code == 200, lifetime.text
        bad_plan = admin.put("/v1/admin/customers/c9/subscription", json={"plan": "nope"})
        assert bad_plan.status_code == 422
        grant = admin.post(
            "/v1/admin/customers/c9/grants",
            json={"feature": "tokens", "kind": "override", "amount": None, "note": "enterprise"},
        )
        assert grant.status_code == 201, grant.text
        shown = admin.get("/v1/admin/customers/c9").json()
        assert shown["subscription"]["source"] == "lifetime" and len(shown["grants"]) == 1
        keys = admin.get("/v1/admin/keys").json()["data"]
        assert len(keys) == 4
        new = admin.post("/v1/admin/keys", json={"scopes": ["read"]})
        assert new.status_code == 201 and new.json()["key"].startswith("mlk_")
        assert admin.post(f"/v1/admin/keys/{new.json()['id']}/revoke").status_code == 200
        assert admin.post("/v1/admin/keys/key_other/revoke").status_code == 404
    with api.client() as http:
        export = http.get("/v1/customers/c9/entitlements/export").json()
        assert (export["reason"], export["plan"]) == ("included", "power")
        tokens = http.get("/v1/customers/c9/entitlements/tokens").json()
        assert tokens["reason"] == "unlimited"
    with api.client("admin") as admin:
        grant_id = admin.get("/v1/admin/customers/c9/grants").json()["data"][0]["id"]
        assert admin.post(f"/v1/admin/grants/{grant_id}/void").status_code == 200
        assert admin.delete("/v1/admin/customers/c9/subscription").status_code == 204
    with api.client() as http:
        tokens = http.get("/v1/customers/c9/entitlements/tokens").json()
        assert tokens["reason"] == "no_subscription"


def test_catalog_admin_validates_with_paths(api: Api) -> None:
    with api.client("admin") as admin:
        bad = admin.put(
            "/v1/admin/catalog",
            content=b"meters:\n  - key: x\n    aggregation: nope\n",
            headers={"content-type": "application/yaml"},
        )
        assert bad.status_code == 422
        assert any("aggregation" in e["field"] for e in bad.json()["errors"])
        current = admin.get("/v1/admin/catalog").json()
        same = admin.put("/v1/admin/catalog", json=current["catalog"])
        assert same.status_code == 200, same.text
        assert same.json()["changed"] is False
        assert all(line.startswith("unchanged") for line in same.json()["stripe"])
        wrong_type = admin.put(
            "/v1/admin/catalog", content=b"x", headers={"content-type": "image/png"}
        )
        assert wrong_type.status_code == 415


def test_usage_series_and_openapi(api: Api) -> None:
    with api.client() as http:
        answer = http.get(
            "/v1/usage",
            params={
                "customer": "c1",
                "meter": "api_calls",
                "from": "2026-11-01T00:00:00Z",
                "to": "2026-11-02T00:00:00Z",
                "window": "day",
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["total"] == 0 and answer.json()["window"] == "day"
        bad = http.get("/v1/usage", params={"meter": "api_calls", "from": "x", "to": "y"})
        assert bad.status_code == 422
        assert (
            http.get(
                "/v1/usage",
                params={
                    "meter": "nope",
                    "from": "2026-11-01T00:00:00Z",
                    "to": "2026-11-02T00:00:00Z",
                },
            ).status_code
            == 404
        )
        spec = http.get("/openapi.json").json()
        assert "/v1/customers/{customer}/entitlements/{feature}/consume" in spec["paths"]
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        assert b"meterline_entitlements_requests_total" in http.get("/metrics").content
