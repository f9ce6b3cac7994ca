"""`require_feature` in an app, with either entitlements client behind it."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from meterline_sdk import AsyncEntitlements, Entitlement, Entitlements
from meterline_sdk.fastapi import install, require_feature


def service(request: httpx.Request) -> httpx.Response:
    customer = request.url.path.split("/")[3]
    if customer == "pro":
        return httpx.Response(200, json={"feature": "export", "has_access": True, "reason": "ok"})
    refused = {"feature": "export", "has_access": False, "reason": "no_subscription"}
    return httpx.Response(200, json=refused)


def app_with(client: Entitlements | AsyncEntitlements) -> FastAPI:
    app = FastAPI()
    install(app, client)

    @app.get("/export", dependencies=[require_feature("export")])
    def export() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/plan")
    def plan(decision: Entitlement = require_feature("export")) -> dict[str, str]:
        return {"reason": decision.reason}

    @app.get("/as/{who}")
    def as_who(
        who: str,
        _: Entitlement = require_feature(
            "export", customer=lambda r: r.path_params.get("who"), upgrade_url="https://u/2"
        ),
    ) -> dict[str, str]:
        return {"who": who}

    @app.middleware("http")
    async def auth(request: Request, call_next):  # type: ignore[no-untyped-def]
        if request.headers.get("x-session") == "pro-session":
            request.state.customer = "pro"
        return await call_next(request)

    return app


def clients() -> list[Entitlements | AsyncEntitlements]:
    transport = httpx.MockTransport(service)
    return [
        Entitlements("http://x", "k", upgrade_url="https://u/1", transport=transport),
        AsyncEntitlements("http://x", "k", upgrade_url="https://u/1", transport=transport),
    ]


@pytest.mark.parametrize("client", clients(), ids=["sync", "async"])
def test_require_feature_passes_or_answers_upgrade_required(
    client: Entitlements | AsyncEntitlements,
) -> None:
    with TestClient(app_with(client)) as http:
        assert http.get("/export", headers={"X-Customer-Id": "pro"}).json() == {"ok": True}
        assert http.get("/export", headers={"x-session": "pro-session"}).status_code == 200
        assert http.get("/plan", headers={"X-Customer-Id": "pro"}).json() == {"reason": "ok"}
        refused = http.get("/export", headers={"X-Customer-Id": "c1"})
        body = refused.json()
        assert refused.status_code == 403 and body["error"] == "upgrade_required"
        assert (body["upgrade_url"], body["feature"], body["reason"]) == (
            "https://u/1",
            "export",
            "no_subscription",
        )
        assert body["message"]
        anonymous = http.get("/export")
        assert (anonymous.status_code, anonymous.json()["reason"]) == (403, "no_customer")
        assert http.get("/as/pro").json() == {"who": "pro"}
        assert http.get("/as/c1").json()["upgrade_url"] == "https://u/2"
