"""Demo step: usage billed through Stripe equals what Meterline counted; a lost event is caught.

1. A new customer subscribes to Power (base price + metered API calls) in the emulator.
2. The app sends API-call events through ingest; the aggregator counts them in Postgres.
3. The reporter flushes the period to Stripe (`POST /v1/reports/run`), the emulator closes
   the period, and the invoice's metered line is printed next to Postgres's count.
4. With the emulator dropping meter events, more (older) usage is pushed: Stripe answers 200
   but loses it. The nightly reconciliation, run now, raises a `missing_in_stripe` alert,
   which /finance shows.
Uses only public surfaces: ingest and reporter HTTP APIs, the Stripe SDK, the emulator's
control API, and Postgres for the demo customer's records.
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from meterline.postgres import connect
from meterline.settings import StripeSettings, load_section
from meterline.stripe import stripe_client
from meterline_devstack.demo_context import DemoContext, out
from stripe_emulator import EmulatorControl

EVENTS = 25


def run(ctx: DemoContext) -> None:
    urls = ctx.stack.urls
    if not all(urls.get(k) for k in ("ingest", "reporter", "stripe")):
        out("billing demo: skipped (ingest, reporter or Stripe emulator not running)")
        return
    settings = load_section(
        StripeSettings, {**os.environ, "METERLINE_STRIPE_API_BASE": urls["stripe"]}
    )
    client = stripe_client(settings)
    ids = _stripe_ids(urls["postgres"], ctx.tenant_id)
    if ids is None:
        out("billing demo: skipped (the catalog has not been synced to Stripe)")
        return
    with EmulatorControl(urls["stripe"]) as control:
        ahead = control.now() - time.time()
    if ahead > 120:
        out("billing demo: skipped (the emulator's clock is ahead after an earlier demo;")
        out("  remove stripe-state.json from the stack folder for a fresh emulator)")
        return
    customer = f"billing-{secrets.token_hex(3)}"
    stripe_customer = client.v1.customers.create({"email": f"{customer}@example.com"}).id
    items = [{"price": ids["base"]}, {"price": ids["metered"]}]
    sub = client.v1.subscriptions.create({"customer": stripe_customer, "items": items})  # type: ignore[arg-type]
    start = datetime.fromtimestamp(sub["items"]["data"][0]["current_period_start"], UTC)
    end = datetime.fromtimestamp(sub["items"]["data"][0]["current_period_end"], UTC)
    _register(urls["postgres"], ctx.tenant_id, customer, stripe_customer, sub.id, start, end)
    out(f"billing demo: {customer} subscribed to Power ({sub.id})")
    with (
        _http(urls["ingest"], ctx.keys["ingest"]) as ingest,
        _http(urls["reporter"], ctx.keys["admin"]) as rep,
    ):
        first = _ceil_minute(start) + timedelta(seconds=1)
        _send(ingest, customer, [(first + timedelta(seconds=i), 1 + i % 3) for i in range(EVENTS)])
        counted = _wait_counted(urls["postgres"], ctx.tenant_id, customer, EVENTS)
        rep.post(
            "/v1/reports/run", json={"flush_until": _iso(first + timedelta(minutes=1))}
        ).raise_for_status()
        _close_and_compare(urls["stripe"], client, sub.id, ids["metered"], counted)
        _lose_one(urls, ctx, ingest, rep, customer)


def _close_and_compare(
    stripe_url: str, client: Any, sub_id: str, price: str, counted: Decimal
) -> None:
    with EmulatorControl(stripe_url) as control:
        invoice = control.close_period(sub_id)
    lines = client.v1.invoices.line_items.list(invoice["id"]).data
    metered = [line for line in lines if _price_of(line) == price]
    quantity = sum((Decimal(str(line["quantity"])) for line in metered), Decimal(0))
    verdict = "equal" if quantity == counted else "DIFFERENT"
    shown = f"{counted.normalize():f}"
    out(f"  invoice {invoice['id']}: metered API calls {quantity}; Postgres counted {shown}")
    out(f"  -> {verdict}")


def _lose_one(
    urls: dict[str, str], ctx: DemoContext, ingest: httpx.Client, rep: httpx.Client, customer: str
) -> None:
    when = datetime.now(UTC).replace(minute=20, second=0, microsecond=0) - timedelta(hours=2)
    _send(ingest, customer, [(when, 7)])
    _wait_counted(urls["postgres"], ctx.tenant_id, customer, EVENTS + 1)
    with EmulatorControl(urls["stripe"]) as control:
        control.set_faults(seed=1, drop_meter_events=1.0)
        try:
            rep.post("/v1/reports/run", json={}).raise_for_status()
        finally:
            control.clear_faults()
    runs = rep.post("/v1/reconciliation/runs", json={"date": when.date().isoformat()})
    runs.raise_for_status()
    alerts = rep.get("/v1/reconciliation/alerts", params={"status": "open"}).json()["data"]
    mine = [a for a in alerts if a["customer"] == customer]
    for a in mine:
        out(
            f"  injected a lost meter event -> alert {a['id']}: {a['kind']} {a['difference']} units"
        )
    out(f"  review it at {urls['reporter']}/finance (sign in with the admin key above)")


def _stripe_ids(db_url: str, tenant_id: int) -> dict[str, str] | None:
    with connect(db_url) as conn:
        rows: dict[str, str] = dict(
            conn.execute(
                "SELECT kind || ':' || key, stripe_id FROM stripe_objects WHERE tenant_id = %s",
                (tenant_id,),
            ).fetchall()
        )
    base, metered = rows.get("price:power"), rows.get("metered_price:power/api_calls")
    return {"base": base, "metered": metered} if base and metered else None


def _register(db_url: str, tenant_id: int, customer: str, stripe_id: str, sub_id: str,
              start: datetime, end: datetime) -> None:  # fmt: skip
    with connect(db_url) as conn:
        conn.execute(
            "INSERT INTO customers (tenant_id, id, stripe_customer_id) VALUES (%s, %s, %s) "
            "ON CONFLICT (tenant_id, id) "
            "DO UPDATE SET stripe_customer_id = EXCLUDED.stripe_customer_id",
            (tenant_id, customer, stripe_id),
        )
        conn.execute(
            "INSERT INTO subscriptions (tenant_id, customer, source, plan, status, "
            "stripe_subscription_id, current_period_start, current_period_end) "
            "VALUES (%s, %s, 'stripe', 'power', 'active', %s, %s, %s) "
            "ON CONFLICT (tenant_id, customer) DO NOTHING",
            (tenant_id, customer, sub_id, start, end),
        )
        conn.commit()


def _send(http: httpx.Client, customer: str, events: list[tuple[datetime, int]]) -> None:
    body = [
        {"id": f"{customer}-{secrets.token_hex(6)}", "customer": customer, "meter": "api_calls",
         "value": value, "timestamp": _iso(when)}
        for when, value in events
    ]  # fmt: skip
    http.post("/v1/events", json=body).raise_for_status()


def _wait_counted(
    db_url: str, tenant_id: int, customer: str, events: int, timeout: float = 60
) -> Decimal:
    deadline = time.monotonic() + timeout
    with connect(db_url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT coalesce(sum(count), 0), coalesce(sum(value), 0) FROM usage_rollups_minute "
                "WHERE tenant_id = %s AND customer = %s AND meter = 'api_calls'",
                (tenant_id, customer),
            ).fetchone()
            if (row and row[0] >= events) or time.monotonic() > deadline:
                return Decimal(row[1]) if row else Decimal(0)
            time.sleep(0.5)


def _price_of(line: Any) -> str | None:
    details = (line.to_dict().get("pricing") or {}).get("price_details") or {}
    price = details.get("price")
    return None if price is None else str(price)


def _http(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _ceil_minute(when: datetime) -> datetime:
    floored = when.replace(second=0, microsecond=0)
    return floored if floored == when else floored + timedelta(minutes=1)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
