"""Who is billed for what: customers with a Stripe id whose plan has a metered price.

A tenant's scope is read from Postgres: the current catalog (plans and their
`metered_prices`), each customer's plan (its subscription, else the catalog's default plan),
the customer's Stripe id and current billing period, and each meter's Stripe meter
(`stripe_objects`, kind 'meter'). A meter without a Stripe meter is left out (the catalog has
not been synced yet); nothing is reported for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from meterline.catalog.model import Aggregation, Catalog, Plan
from meterline.catalog.repository import PostgresCatalogRepository

# Catalog aggregation -> Stripe meter formula (interface 4 of the design).
FORMULA = {
    Aggregation.SUM: "sum",
    Aggregation.COUNT: "sum",
    Aggregation.MAX: "last",
    Aggregation.LATEST: "last",
}


@dataclass(frozen=True, slots=True)
class BilledMeter:
    """A meter as Stripe knows it, with the price of one unit in minor units."""

    key: str
    aggregation: Aggregation
    event_name: str
    stripe_meter_id: str
    unit_amount_decimal: Decimal
    currency: str

    @property
    def formula(self) -> str:
        return FORMULA[self.aggregation]


@dataclass(frozen=True, slots=True)
class BilledCustomer:
    customer: str
    stripe_customer_id: str
    plan: str
    meters: dict[str, BilledMeter]
    period_start: datetime | None = None
    period_end: datetime | None = None


@dataclass
class TenantScope:
    tenant_id: int
    customers: dict[str, BilledCustomer] = field(default_factory=dict)

    def meter(self, customer: str, meter: str) -> BilledMeter | None:
        found = self.customers.get(customer)
        return None if found is None else found.meters.get(meter)

    def pairs(self) -> Iterator[tuple[BilledCustomer, BilledMeter]]:
        for c in self.customers.values():
            for m in c.meters.values():
                yield c, m


def tenant_ids(pool: ConnectionPool) -> list[int]:
    with pool.connection() as conn:
        return [r[0] for r in conn.execute("SELECT id FROM tenants ORDER BY id").fetchall()]


def load_scope(pool: ConnectionPool, tenant_id: int) -> TenantScope:
    """The tenant's billable (customer, meter) pairs; empty before its first catalog."""
    current = PostgresCatalogRepository(pool).current(tenant_id)
    scope = TenantScope(tenant_id)
    if current is None:
        return scope
    catalog = current[1]
    with pool.connection() as conn:
        meters = stripe_meters(conn, tenant_id)
        rows = _customers(conn, tenant_id)
    for row in rows:
        customer = _billed(catalog, meters, row)
        if customer is not None:
            scope.customers[customer.customer] = customer
    return scope


def stripe_meters(conn: psycopg.Connection[Any], tenant_id: int) -> dict[str, tuple[str, str]]:
    rows = conn.execute(
        "SELECT key, stripe_id, event_name FROM stripe_objects "
        "WHERE tenant_id = %s AND kind = 'meter' AND event_name IS NOT NULL",
        (tenant_id,),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _customers(conn: psycopg.Connection[Any], tenant_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT c.id, c.stripe_customer_id, s.plan, s.current_period_start, "
        "s.current_period_end FROM customers c "
        "LEFT JOIN subscriptions s ON s.tenant_id = c.tenant_id AND s.customer = c.id "
        "WHERE c.tenant_id = %s AND c.stripe_customer_id IS NOT NULL",
        (tenant_id,),
    ).fetchall()


def _billed(
    catalog: Catalog, meters: dict[str, tuple[str, str]], row: tuple[Any, ...]
) -> BilledCustomer | None:
    customer, stripe_id, plan_key, start, end = row
    plan = catalog.plan(plan_key) if plan_key else catalog.default_plan
    if plan is None:
        return None
    billed = billed_meters(catalog, meters, plan)
    if not billed:
        return None
    return BilledCustomer(customer, stripe_id, plan.key, billed, start, end)


def billed_meters(
    catalog: Catalog, meters: dict[str, tuple[str, str]], plan: Plan
) -> dict[str, BilledMeter]:
    """The meters `plan` bills that have a Stripe meter, with their prices."""
    billed: dict[str, BilledMeter] = {}
    for key, price in plan.metered_prices.items():
        meter = catalog.meter(key)
        if meter is None or key not in meters:
            continue
        stripe_meter, event_name = meters[key]
        billed[key] = BilledMeter(
            key,
            meter.aggregation,
            event_name,
            stripe_meter,
            price.unit_amount_decimal,
            price.currency,
        )
    return billed
