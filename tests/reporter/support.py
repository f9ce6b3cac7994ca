"""Seeding a reporter world: a tenant with a catalog, customers and subscriptions in Stripe
(the emulator) and in Postgres, and usage written straight into the ledger and rollups."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import stripe
from psycopg_pool import ConnectionPool

from meterline.catalog.parse import parse_catalog
from meterline.catalog.repository import PostgresCatalogRepository
from meterline.clock import FakeClock
from meterline.postgres import open_pool
from meterline.postgres.partitions import create_day_partition
from meterline.stripe.meter_events import MeterEventSender, StripeMeterEventSender
from meterline.stripe.sending import RetryingSender
from meterline.stripe.summaries import StripeSummaryReader
from reporter.metrics import ReporterMetrics
from reporter.notify import MemoryNotifier
from reporter.service import Reporter
from reporter.settings import ReporterSettings

CATALOG = {
    "meters": [{"key": "api_calls", "aggregation": "sum"}],
    "features": [{"key": "api_calls", "kind": "metered", "meter": "api_calls"}],
    "plans": [
        {
            "key": "free",
            "default": True,
            "features": {"api_calls": {"limit": 10, "reset": "month", "overage": "block"}},
        },
        {
            "key": "power",
            "price": {"amount": 4900, "currency": "usd", "interval": "month"},
            "metered_prices": {"api_calls": {"unit_amount_decimal": "0.5", "currency": "usd"}},
            "features": {
                "api_calls": {"limit": 100000, "reset": "billing_period", "overage": "allow"}
            },
        },
    ],
}
_ids = itertools.count()
_EVENT = (
    "INSERT INTO usage_events (tenant_id, event_id, day, customer, meter, ts, value, "
    "received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, now())"
)
_ROLLUP = (
    "INSERT INTO usage_rollups_minute (tenant_id, customer, meter, bucket, value, count, "
    "latest_ts) VALUES (%s, %s, %s, %s, %s, 1, %s) "
    "ON CONFLICT (tenant_id, customer, meter, bucket) DO UPDATE "
    "SET value = usage_rollups_minute.value + EXCLUDED.value, "
    "count = usage_rollups_minute.count + 1, "
    "latest_ts = greatest(usage_rollups_minute.latest_ts, EXCLUDED.latest_ts)"
)


@dataclass
class Customer:
    key: str
    stripe_id: str
    subscription: str
    period_start: datetime
    period_end: datetime


@dataclass
class World:
    pool: ConnectionPool
    tenant_id: int
    meter_id: str
    event_name: str
    customers: dict[str, Customer] = field(default_factory=dict)
    meters: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (mtr_, event)


def catalog_with(meters: dict[str, str]) -> dict[str, Any]:
    """CATALOG with these meters (key -> aggregation), each metered at 0.5 cents on power."""
    catalog: dict[str, Any] = {
        **CATALOG,
        "meters": [{"key": k, "aggregation": a} for k, a in meters.items()],
        "features": [{"key": k, "kind": "metered", "meter": k} for k in meters],
    }
    free, power = (dict(p) for p in CATALOG["plans"])
    free["features"] = {k: {"limit": 10, "reset": "month", "overage": "block"} for k in meters}
    power["features"] = {
        k: {"limit": 100000, "reset": "billing_period", "overage": "allow"} for k in meters
    }
    power["metered_prices"] = {k: {"unit_amount_decimal": "0.5", "currency": "usd"} for k in meters}
    catalog["plans"] = [free, power]
    return catalog


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def make_world(
    conninfo: str,
    client: stripe.StripeClient,
    n_customers: int,
    name: str = "acme",
    meters: dict[str, str] | None = None,
) -> World:
    """A tenant billed for `meters` (key -> catalog aggregation; default api_calls, sum);
    `meter_id` and `event_name` are the first meter's."""
    meters = meters or {"api_calls": "sum"}
    pool = open_pool(conninfo, max_size=6)
    with pool.connection() as conn:
        tenant_id = conn.execute(
            "INSERT INTO tenants (name) VALUES (%s) RETURNING id", (name,)
        ).fetchone()[0]
    PostgresCatalogRepository(pool).apply(tenant_id, parse_catalog(catalog_with(meters)))
    prices = []
    world = World(pool, tenant_id, "", "")
    for key, aggregation in meters.items():
        meter_id, event_name, price_id = _stripe_meter(pool, client, tenant_id, key, aggregation)
        world.meters[key] = (meter_id, event_name)
        prices.append(price_id)
    world.meter_id, world.event_name = next(iter(world.meters.values()))
    for i in range(n_customers):
        add_customer(world, client, f"cust_{i}", *prices)
    return world


def _stripe_meter(
    pool: ConnectionPool, client: stripe.StripeClient, tenant_id: int, key: str, aggregation: str
) -> tuple[str, str, str]:
    event_name = f"ml_{tenant_id}_{key}_{next(_ids)}"
    formula = "sum" if aggregation in ("sum", "count") else "last"
    meter = client.v1.billing.meters.create(
        {
            "display_name": key,
            "event_name": event_name,
            "default_aggregation": {"formula": formula},
        }
    )
    price = client.v1.prices.create(
        {
            "currency": "usd",
            "unit_amount_decimal": "0.5",
            "product_data": {"name": key},
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO stripe_objects (tenant_id, kind, key, stripe_id, event_name) "
            "VALUES (%s, 'meter', %s, %s, %s)",
            (tenant_id, key, meter.id, event_name),
        )
    return meter.id, event_name, price.id


def add_customer(world: World, client: stripe.StripeClient, key: str, *price_ids: str) -> Customer:
    customer = client.v1.customers.create({"email": f"{key}@example.com"})
    items = [{"price": p} for p in price_ids]
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": items})
    item = sub["items"]["data"][0]
    start, end = utc(item["current_period_start"]), utc(item["current_period_end"])
    with world.pool.connection() as conn:
        conn.execute(
            "INSERT INTO customers (tenant_id, id, stripe_customer_id) VALUES (%s, %s, %s)",
            (world.tenant_id, key, customer.id),
        )
        conn.execute(
            "INSERT INTO subscriptions (tenant_id, customer, source, plan, status, "
            "stripe_subscription_id, current_period_start, current_period_end) "
            "VALUES (%s, %s, 'stripe', 'power', 'active', %s, %s, %s)",
            (world.tenant_id, key, sub.id, start, end),
        )
    found = Customer(key, customer.id, sub.id, start, end)
    world.customers[key] = found
    return found


def add_usage(
    world: World, customer: str, when: datetime, value: int | Decimal, meter: str = "api_calls"
) -> None:
    """One counted event: a ledger row and its minute rollup, as the aggregator writes them."""
    bucket = when.replace(second=0, microsecond=0)
    with world.pool.connection() as conn:
        create_day_partition(conn, when.date())
        conn.execute(
            _EVENT,
            (world.tenant_id, f"evt_{next(_ids)}", when.date(), customer, meter, when, value),
        )
        conn.execute(_ROLLUP, (world.tenant_id, customer, meter, bucket, value, when))


def postgres_total(world: World, customer: str, start: datetime, end: datetime) -> Decimal:
    with world.pool.connection() as conn:
        row = conn.execute(
            "SELECT coalesce(sum(value), 0) FROM usage_rollups_minute WHERE tenant_id = %s "
            "AND customer = %s AND bucket >= %s AND bucket < %s",
            (world.tenant_id, customer, start, end),
        ).fetchone()
    return Decimal(row[0])


def stripe_totals(control: Any, event_name: str) -> dict[str, Decimal]:
    """Per Stripe customer: the sum of the events the emulator counts (accepted)."""
    out: dict[str, Decimal] = {}
    for e in control.meter_events(event_name=event_name, status="accepted"):
        out[e["customer"]] = out.get(e["customer"], Decimal(0)) + Decimal(e["value"])
    return out


def settings_for(**overrides: Any) -> ReporterSettings:
    base: dict[str, Any] = {
        "retry_base_s": 0.001,
        "retry_max_s": 0.01,
        "retry_max_attempts": 30,
        "stripe_lag_s": 0,
        "scheduler_enabled": False,
    }
    base.update(overrides)
    return ReporterSettings(**base)


def reporter_for(
    world: World,
    client: stripe.StripeClient,
    clock: FakeClock,
    settings: ReporterSettings | None = None,
    sender: MeterEventSender | None = None,
) -> Reporter:
    settings = settings or settings_for()
    metrics = ReporterMetrics()
    if sender is None:
        inner = StripeMeterEventSender(
            client, settings.stream_threshold, on_request=metrics.observe_stripe
        )
        sender = RetryingSender(
            inner, settings.retry_max_attempts, settings.retry_base_s, settings.retry_max_s,
            on_retry=metrics.observe_retry,
        )  # fmt: skip
    return Reporter(
        pool=world.pool,
        settings=settings,
        clock=clock,
        sender=sender,
        summaries=StripeSummaryReader(client),
        metrics=metrics,
        notifier=MemoryNotifier(),
    )


def emulator_clock(control: Any) -> FakeClock:
    return FakeClock(int(control.now() * 1000))


def hours_ago(clock: FakeClock, hours: float) -> datetime:
    return clock.now() - timedelta(hours=hours)
