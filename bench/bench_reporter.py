"""Reporter benchmark: push one period (one hour of usage) for 10,000 customers x 3 meters to
the Stripe emulator, then reconcile that day. Prints figures; asserts nothing about time.

Set-up (not timed): a fresh tenant whose Power plan has 3 metered meters, one Stripe meter
each in the emulator, 10,000 customers with a Stripe id, and one minute rollup per
(customer, meter) in the hour being reported — 30,000 hourly pre-aggregates. The push goes
through the production sender chain (v2 meter event stream above the threshold, client-side
rate limit, retries). Reconciliation makes one event-summaries call per (customer, meter).
Beside the wall times, the CPU the reporter spent (this process, all threads; the emulator
and Postgres run apart) per event pushed and per pair reconciled, less sensitive to load.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta

import stripe

from bench.harness import BenchContext, Figure
from meterline.catalog.parse import parse_catalog
from meterline.catalog.repository import PostgresCatalogRepository
from meterline.postgres import open_pool
from meterline.settings import DatabaseSettings, StripeSettings
from reporter.service import build
from reporter.settings import ReporterSettings

METERS = ("api_calls", "tokens", "storage")
CPU_NOTE = "the reporter's CPU (this process, all threads), not Postgres's or the emulator's"


def run(ctx: BenchContext) -> list[Figure]:
    customers = ctx.scale(10_000)
    stripe_url, db_url = ctx.urls["stripe"], ctx.urls["postgres"]
    tenant_id, hour = _seed(db_url, stripe_url, customers)
    settings = ReporterSettings(
        scheduler_enabled=False, meter_event_rate=5000, stream_rate=5000, summary_rate=5000,
        summary_workers=8, stripe_lag_s=0, lookback_hours=6,
    )  # fmt: skip
    reporter = build(DatabaseSettings(url=db_url), StripeSettings(api_base=stripe_url), settings)
    try:
        pairs = customers * len(METERS)
        started, cpu = time.perf_counter(), time.process_time()
        report = reporter.pusher.run([tenant_id])
        push_s, push_cpu = time.perf_counter() - started, time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        results = reporter.reconciler.run(hour.date(), "manual", [tenant_id])
        reconcile_s = time.perf_counter() - started
        reconcile_cpu = time.process_time() - cpu
    finally:
        reporter.close()
    alerts = sum(len(r.discrepancies) for r in results)
    note = f"{customers} customers x {len(METERS)} meters; {report.delivered} events delivered"
    return [
        Figure("reporter.push_period", push_s, "s", note=note + f", status {report.status}"),
        Figure("reporter.push_rate", pairs / push_s, "events/s", note="v2 meter event stream"),
        Figure("reporter.push_cpu_per_event", push_cpu / pairs * 1e6, "µs", note=CPU_NOTE),
        Figure(
            "reporter.reconcile_day",
            reconcile_s,
            "s",
            note=f"{pairs} summary calls, {alerts} alerts",
        ),
        Figure("reporter.reconcile_rate", pairs / reconcile_s, "pairs/s"),
        Figure("reporter.reconcile_cpu_per_pair", reconcile_cpu / pairs * 1e6, "µs", note=CPU_NOTE),
    ]


def _seed(db_url: str, stripe_url: str, customers: int) -> tuple[int, datetime]:
    client = stripe.StripeClient(
        "sk_test_bench", base_addresses={"api": stripe_url, "meter_events": stripe_url}
    )
    name = f"bench-reporter-{secrets.token_hex(3)}"
    hour = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    with open_pool(db_url, max_size=2) as pool:
        with pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO tenants (name) VALUES (%s) RETURNING id", (name,)
            ).fetchone()
        assert row is not None
        tenant_id = int(row[0])
        PostgresCatalogRepository(pool).apply(tenant_id, parse_catalog(_catalog()))
        with pool.connection() as conn:
            for meter in METERS:
                event = f"ml_{tenant_id}_{meter}_{secrets.token_hex(2)}"
                created = client.v1.billing.meters.create(
                    {
                        "display_name": meter,
                        "event_name": event,
                        "default_aggregation": {"formula": "sum"},
                    }
                )
                conn.execute(
                    "INSERT INTO stripe_objects (tenant_id, kind, key, stripe_id, event_name) "
                    "VALUES (%s, 'meter', %s, %s, %s)",
                    (tenant_id, meter, created.id, event),
                )
            _customers(conn, tenant_id, customers, hour)
    return tenant_id, hour


def _customers(conn: object, tenant_id: int, count: int, hour: datetime) -> None:
    cur = conn.cursor()  # type: ignore[attr-defined]
    with cur.copy("COPY customers (tenant_id, id, stripe_customer_id) FROM STDIN") as copy:
        for i in range(count):
            copy.write_row((tenant_id, f"c{i}", f"cus_bench{tenant_id}x{i}"))
    with cur.copy(
        "COPY subscriptions (tenant_id, customer, source, plan, status) FROM STDIN"
    ) as copy:
        for i in range(count):
            copy.write_row((tenant_id, f"c{i}", "manual", "power", "active"))
    columns = "tenant_id, customer, meter, bucket, value, count, latest_ts"
    with cur.copy(f"COPY usage_rollups_minute ({columns}) FROM STDIN") as copy:
        for i in range(count):
            for n, meter in enumerate(METERS):
                bucket = hour + timedelta(minutes=(i + n) % 60)
                copy.write_row((tenant_id, f"c{i}", meter, bucket, 1 + (i % 97), 1, bucket))


def _catalog() -> dict[str, object]:
    metered = {m: {"unit_amount_decimal": "0.1", "currency": "usd"} for m in METERS}
    unlimited = {"limit": None, "reset": "billing_period", "overage": "allow"}
    return {
        "meters": [{"key": m, "aggregation": "sum"} for m in METERS],
        "features": [{"key": m, "kind": "metered", "meter": m} for m in METERS],
        "plans": [
            {"key": "free", "default": True, "features": {}},
            {"key": "power", "price": {"amount": 4900, "currency": "usd", "interval": "month"},
             "metered_prices": metered,
             "features": {m: unlimited for m in METERS}},
        ],
    }  # fmt: skip
