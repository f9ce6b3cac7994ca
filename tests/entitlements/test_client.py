"""The SDK's entitlements client and FastAPI dependency against the real API (the SDK's
unit tests, with scripted answers, are in sdk/tests)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from meterline_sdk.entitlements import Entitlements, EntitlementsError
from meterline_sdk.fastapi import install, require_feature
from tests.entitlements.conftest import Api


def test_client_against_the_api(api: Api) -> None:
    with Entitlements(api.url, api.keys["app"], ttl=60) as client:
        assert client.check("c1", "api_calls").reason == "within_limit"
        assert client.cached("c1", "api_calls") is not None
        granted = client.consume("c1", "api_calls", 50, "e-client")
        assert granted.has_access and client.cached("c1", "api_calls") is None
        refused = client.consume("c1", "api_calls", 1, "e-client-2")
        assert (refused.has_access, refused.reason) == (False, "limit_exceeded")
        assert client.check("c1", "api_calls").has_access is False
        with pytest.raises(EntitlementsError) as err:
            client.check("c1", "nope")
        assert err.value.status == 404


def test_require_feature_answers_upgrade_required(api: Api) -> None:
    app = FastAPI()
    install(app, Entitlements(api.url, api.keys["read"], upgrade_url="https://example.com/up"))

    @app.get("/export", dependencies=[require_feature("export")])
    def export() -> dict[str, bool]:
        return {"ok": True}

    with api.client("admin") as admin:
        admin.post("/v1/admin/customers", json={"id": "pro"}).raise_for_status()
        admin.put("/v1/admin/customers/pro/subscription", json={"plan": "power"}).raise_for_status()
    with TestClient(app) as http:
        refused = http.get("/export", headers={"X-Customer-Id": "c1"})
        assert refused.status_code == 403
        body = refused.json()
        assert (
            body["error"] == "upgrade_required" and body["upgrade_url"] == "https://example.com/up"
        )
        assert body["message"] and body["reason"] == "no_subscription"
        assert http.get("/export", headers={"X-Customer-Id": "pro"}).json() == {"ok": True}
        assert http.get("/export").status_code == 403
