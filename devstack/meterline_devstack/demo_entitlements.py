"""Demo step: a Free customer hits its weekly limit; an upgrade through Stripe lifts it.

Uses only public surfaces: the entitlements API (admin, consume, checks), the Stripe SDK against
the emulator (subscription), and the emulator's control API (webhook endpoint registration).
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

import httpx

from meterline.settings import StripeSettings, load_section
from meterline.stripe import price_lookup_key, stripe_client
from meterline_devstack.demo_context import DemoContext, out
from meterline_devstack.stack import DEV_WEBHOOK_SECRET
from stripe_emulator import EmulatorControl


def run(ctx: DemoContext) -> None:
    url, stripe_url = ctx.stack.urls.get("entitlements"), ctx.stack.urls.get("stripe")
    if not url or not stripe_url:
        out("entitlements demo: skipped (service or Stripe emulator not running)")
        return
    settings = load_section(StripeSettings, {**os.environ, "METERLINE_STRIPE_API_BASE": stripe_url})
    secret = settings.webhook_secret or DEV_WEBHOOK_SECRET  # as the stack gives its services
    with EmulatorControl(stripe_url) as control:
        control.add_webhook_endpoint(f"{url}/v1/stripe/webhook", secret=secret)
    customer = f"demo-{secrets.token_hex(3)}"
    admin = _http(url, ctx.keys["admin"])
    app = _http(url, ctx.keys["ingest"])
    reader = _http(url, ctx.keys["read"])
    try:
        admin.post("/v1/admin/customers", json={"id": customer}).raise_for_status()
        _hit_the_limit(app, customer)
        _upgrade(admin, reader, settings, ctx.tenant_id, customer)
        after = _consume(app, customer, 1, "after-upgrade")
        out(f"  after the upgrade: consume 1 -> {after['reason']} (limit {after['limit']})")
    finally:
        for client in (admin, app, reader):
            client.close()


def _http(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=15)


def _consume(http: httpx.Client, customer: str, amount: int, event_id: str) -> dict[str, Any]:
    path = f"/v1/customers/{customer}/entitlements/api_calls/consume"
    answer = http.post(path, json={"amount": amount, "event_id": f"{customer}-{event_id}"})
    return dict(answer.json())


def _hit_the_limit(http: httpx.Client, customer: str) -> None:
    out(f"entitlements demo: customer {customer} on Free (50 API calls a week)")
    first = _consume(http, customer, 50, "batch")
    out(f"  consume 50 -> granted={first['granted']} ({first['reason']}, used {first['used']})")
    refused = _consume(http, customer, 1, "one-more")
    out(f"  consume 1  -> granted={refused['granted']} ({refused['reason']})")


def _upgrade(
    admin: httpx.Client, reader: httpx.Client, s: StripeSettings, tenant_id: int, customer: str
) -> None:
    linked = admin.post(f"/v1/admin/customers/{customer}/stripe")
    linked.raise_for_status()
    client = stripe_client(s)
    key = price_lookup_key(tenant_id, "power")
    price = client.v1.prices.list({"lookup_keys": [key], "limit": 1}).data[0]
    client.v1.subscriptions.create(
        {"customer": linked.json()["stripe_customer_id"], "items": [{"price": price.id}]}
    )
    out("  upgraded to Power through Stripe; waiting for the webhook...")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = reader.get(f"/v1/customers/{customer}/entitlements/api_calls").json()
        if answer.get("plan") == "power":
            out(f"  webhook applied: plan {answer['plan']}, reason {answer['reason']}")
            return
        time.sleep(0.2)
    out("  the webhook did not arrive in 15 s (see .meterline/logs/entitlements.log)")
