"""The app-side client: cache, fail-open/fail-closed, and the FastAPI dependency."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from meterline.client.entitlements import UNAVAILABLE, Entitlements, EntitlementsError
from meterline.client.fastapi import install, require_feature
from tests.entitlements.conftest import Api, free_port


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def down() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_unreachable_service_fails_closed_unless_the_feature_fails_open() -> None:
    with Entitlements(down(), "k", fail_open=["search"], timeout=0.5) as client:
        closed = client.check("c1", "export")
        assert (closed.has_access, closed.reason, closed.fallback) == (False, UNAVAILABLE, True)
        assert client.check("c1", "search").has_access is True
        assert client.consume("c1", "export", 1, "e1").has_access is False


def test_a_stale_answer_beats_the_fail_mode() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] > 1:
            return httpx.Response(503, json={"error": "unavailable"})
        return httpx.Response(
            200, json={"feature": "export", "has_access": True, "reason": "included"}
        )

    clock = Clock()
    client = Entitlements(
        "http://x", "k", ttl=5, transport=httpx.MockTransport(handler), clock=clock
    )
    assert client.check("c1", "export").has_access
    assert client.check("c1", "export").has_access and calls["n"] == 1
    clock.t = 10
    stale = client.check("c1", "export")
    assert (stale.has_access, stale.stale, calls["n"]) == (True, True, 2)


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
