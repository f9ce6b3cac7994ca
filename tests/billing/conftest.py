"""Fixtures: the entitlements API with the billing routes, on the example catalog plus a credit
pack, against the real Postgres, Redis and Kafka and the Stripe emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from meterline.catalog import Catalog, catalog_from_document
from meterline.postgres import open_pool
from meterline.tenants import PostgresTenantRepository
from tests.entitlements.catalogs import example_catalog
from tests.entitlements.conftest import WEBHOOK_SECRET, Api, api_env, serve_api
from tests.fixtures.stripe import StripeEmulatorHandle

__all__ = ["api_env"]

PACK = {
    "key": "calls_10k",
    "name": "10,000 API calls",
    "price": {"amount": 1500, "currency": "usd"},
    "credits": {"api_calls": 10000},
}
SUCCESS = "https://app.example/billing?session={CHECKOUT_SESSION_ID}"
CANCEL = "https://app.example/pricing"


def billing_catalog() -> Catalog:
    """The example catalog, a credit pack, and per-seat pricing on Basic (a `seats` feature)."""
    doc: dict[str, Any] = example_catalog().to_document()
    doc["credit_packs"] = [PACK]
    doc["meters"].append({"key": "seats", "aggregation": "latest"})
    doc["features"].append({"key": "seats", "kind": "metered", "meter": "seats"})
    doc["plans"][1]["features"]["seats"] = {"limit": None}
    return catalog_from_document(doc)


@pytest.fixture
def api(api_env: dict[str, str], stripe_emulator: StripeEmulatorHandle) -> Iterator[Api]:
    """The API (tenant `acme`, with a `billing` key) on the billing catalog."""
    for served in serve_api(api_env, stripe_emulator, billing_catalog()):
        with open_pool(api_env["METERLINE_DATABASE_URL"], max_size=1) as pool:
            served.keys["billing"] = PostgresTenantRepository(pool).create_key("acme", ["billing"])[
                1
            ]
        yield served


def register(api: Api, **options: object) -> None:
    control = api.stripe.control
    events = options.pop("enabled_events", None)
    control.add_webhook_endpoint(
        api.url + "/v1/stripe/webhook", secret=WEBHOOK_SECRET, enabled_events=events
    )
    if options:
        control.webhook_options(**options)


def checkout(api: Api, customer: str, **what: str) -> httpx.Response:
    with api.client("billing") as http:
        body = {**what, "success_url": SUCCESS, "cancel_url": CANCEL}
        return http.post(f"/v1/customers/{customer}/checkout", json=body)


def decision(api: Api, customer: str, feature: str) -> dict[str, Any]:
    with api.client() as http:
        answer = http.get(f"/v1/customers/{customer}/entitlements/{feature}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())
