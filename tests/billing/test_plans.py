"""`GET /v1/plans`: what an app's pricing page shows, through the real service."""

from __future__ import annotations

import httpx
import pytest

from tests.entitlements.conftest import Api

pytestmark = pytest.mark.integration


def test_the_plans_and_packs_in_catalog_order(api: Api) -> None:
    for scope in ("billing", "read", "admin"):
        with api.client(scope) as http:
            answer = http.get("/v1/plans")
        assert answer.status_code == 200, (scope, answer.text)
    doc = answer.json()
    assert [p["key"] for p in doc["plans"]] == ["free", "basic", "power"]
    free, basic, power = doc["plans"]
    assert (free["default"], free["price"], free["name"]) == (True, None, "Free")
    assert basic["price"] == {"amount": 900, "currency": "usd", "interval": "month"}
    assert basic["features"]["api_calls"] == {"limit": 1000, "reset": "month", "overage": "block"}
    assert set(power["metered_prices"]) == {"api_calls"}
    (pack,) = doc["credit_packs"]
    assert (pack["key"], pack["name"], pack["credits"]) == (
        "calls_10k",
        "10,000 API calls",
        {"api_calls": 10000},
    )
    calls = next(f for f in doc["features"] if f["key"] == "api_calls")
    assert (calls["kind"], calls["meter"]) == ("metered", "api_calls")


def test_an_ingest_key_is_refused(api: Api) -> None:
    with api.client("ingest") as http:
        assert http.get("/v1/plans").status_code == 403
    with httpx.Client(base_url=api.url, headers={"Authorization": "Bearer nope"}) as http:
        assert http.get("/v1/plans").status_code == 401
