"""Billing contexts: who billed a customer's usage, and at what price, at each moment.

A context is a customer's plan, Stripe customer and subscription, and the meters that plan
bills with their Stripe meters and prices. `report_contexts` keeps each customer's contexts
over time; a slot is billed by the context in force at its start (`ContextHistory.at`), so a
downgrade or a cancellation never drops or reprices usage that happened before it.

Each push compares the customers' current state (catalog, `customers`, `subscriptions`) with
their newest recorded context (`changes`). A change takes effect at the Stripe event that made
it (`subscriptions.stripe_event_created`, else the row's `updated_at`), rounded up to the
minute like every boundary, so a webhook delivered hours late still dates it right. A
subscription that has ended (canceled, incomplete_expired) bills nothing from then on. A
customer's first context covers all earlier usage (`EPOCH`). Recording a change is the
business of `boundaries.py`, which may have to move it (an hour already pushed is never
split).

Contexts are recorded by each push and by each scheduler tick for the subscriptions whose row
changed since the last tick (`Pusher.sync_changed`, under the push lock). A context change is
also a boundary, so the hour of a mid-hour downgrade is two slots: the usage before goes out
under the old context (Stripe bills it on the old item, by the event's timestamp), the usage
after under the new one. Reconciliation reads the same history, hour by hour.

Known limits: `subscriptions` holds only the current state, so two changes of one
subscription within one tick (15 s) leave only the second. Reconciliation and repairs see a
customer only once its first context is recorded. A change is dated by the newest Stripe
event applied to the subscription; if a later event of the same subscription was applied
before the change's webhook arrived, the change is dated later than it happened.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from meterline.catalog.model import Aggregation
from meterline.catalog.parse import metered_price_from_document
from meterline.catalog.repository import PostgresCatalogRepository
from reporter.scope import (
    BilledCustomer,
    BilledMeter,
    TenantScope,
    billed_meters,
    same_prices,
    stripe_meters,
)
from reporter.slots import HOUR, ceil_minute

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ENDED = ("canceled", "incomplete_expired")


@dataclass(frozen=True, slots=True)
class Context:
    customer: str
    since: datetime
    plan: str | None
    stripe_customer_id: str
    subscription: str | None
    meters: dict[str, BilledMeter]

    def same_terms(self, other: Context) -> bool:
        """Same plan, Stripe customer, subscription and prices (whatever `since`)."""
        return (self.plan, self.stripe_customer_id, self.subscription) == (
            other.plan,
            other.stripe_customer_id,
            other.subscription,
        ) and same_prices(self.meters, other.meters)


@dataclass(frozen=True, slots=True)
class Current:
    """A customer's state now, and since when (the Stripe event that made it)."""

    context: Context
    changed_at: datetime
    period: tuple[datetime | None, datetime | None]


@dataclass
class ContextHistory:
    tenant_id: int
    contexts: dict[str, list[Context]] = field(default_factory=dict)

    def at(self, customer: str, when: datetime) -> Context | None:
        """The context in force at `when`: the newest with `since` <= `when`."""
        found = None
        for c in self.contexts.get(customer, ()):
            if c.since > when:
                break
            found = c
        return found

    def meter(self, customer: str, meter: str, when: datetime) -> BilledMeter | None:
        context = self.at(customer, when)
        return None if context is None else context.meters.get(meter)

    def add(self, context: Context) -> None:
        """Insert `context` in its customer's history, in `since` order."""
        mine = self.contexts.setdefault(context.customer, [])
        mine.append(context)
        if len(mine) > 1 and mine[-2].since > context.since:
            mine.sort(key=lambda c: c.since)

    def latest(self, customer: str) -> Context | None:
        found = self.contexts.get(customer)
        return found[-1] if found else None

    def scope(self) -> TenantScope:
        """Every meter any context of a customer billed (for `period_maxima`'s meter keys)."""
        scope = TenantScope(self.tenant_id)
        for customer, history in self.contexts.items():
            meters = {k: m for c in history for k, m in c.meters.items()}
            scope.customers[customer] = BilledCustomer(customer, history[-1].stripe_customer_id,
                                                       history[-1].plan or "", meters)  # fmt: skip
        return scope


def load_history(
    conn: psycopg.Connection[Any], tenant_id: int, customers: Sequence[str] | None = None
) -> ContextHistory:
    """The tenant's recorded contexts (only `customers`' when given); identical meter sets
    are decoded once."""
    only = None if customers is None else list(customers)
    rows = conn.execute(
        "SELECT customer, since, plan, stripe_customer_id, stripe_subscription_id, meters::text "
        "FROM report_contexts WHERE tenant_id = %s AND (%s::text[] IS NULL OR customer = ANY(%s)) "
        "ORDER BY customer, since",
        (tenant_id, only, only),
    ).fetchall()
    history = ContextHistory(tenant_id)
    decoded: dict[str, dict[str, BilledMeter]] = {}
    for customer, since, plan, stripe_id, sub, raw in rows:
        meters = decoded.get(raw)
        if meters is None:
            meters = decoded[raw] = _meters(json.loads(raw))
        history.add(Context(customer, since, plan, stripe_id, sub, meters))
    return history


def billed_at(
    pool: ConnectionPool, tenant_id: int, customer: str, meter: str, when: datetime
) -> tuple[Context, BilledMeter] | None:
    """The context that billed `customer`'s `meter` at `when` (or within the hour that starts
    there), and the meter as it billed it; None when no context did."""
    with pool.connection() as conn:
        history = load_history(conn, tenant_id, [customer])
    for context in history.contexts.get(customer, ()):
        in_force = context is history.at(customer, when)
        if meter in context.meters and (in_force or when <= context.since < when + HOUR):
            return context, context.meters[meter]
    return None


def insert(conn: psycopg.Connection[Any], tenant_id: int, contexts: Sequence[Context]) -> None:
    """Record `contexts` (on `conn`, in its transaction); an existing (customer, since) stays."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO report_contexts (tenant_id, customer, since, plan, stripe_customer_id, "
            "stripe_subscription_id, meters) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [(tenant_id, c.customer, c.since, c.plan, c.stripe_customer_id, c.subscription,
              json.dumps(_encode(c.meters))) for c in contexts],
        )  # fmt: skip


def load_current(
    pool: ConnectionPool, tenant_id: int, customers: Sequence[str] | None = None
) -> list[Current]:
    """Every customer with a Stripe id (of `customers` when given), with the context its
    subscription gives it now."""
    only = None if customers is None else list(customers)
    found = PostgresCatalogRepository(pool).current(tenant_id)
    if found is None:
        return []
    catalog = found[1]
    with pool.connection() as conn:
        meters = stripe_meters(conn, tenant_id)
        rows = conn.execute(
            "SELECT c.id, c.stripe_customer_id, s.plan, s.status, s.stripe_subscription_id, "
            "s.current_period_start, s.current_period_end, "
            "coalesce(to_timestamp(s.stripe_event_created), s.updated_at, c.created_at) "
            "FROM customers c LEFT JOIN subscriptions s "
            "ON s.tenant_id = c.tenant_id AND s.customer = c.id "
            "WHERE c.tenant_id = %s AND c.stripe_customer_id IS NOT NULL "
            "AND (%s::text[] IS NULL OR c.id = ANY(%s))",
            (tenant_id, only, only),
        ).fetchall()
    out = []
    by_plan: dict[str, dict[str, BilledMeter]] = {}
    for customer, stripe_id, plan_key, status, sub, start, end, changed in rows:
        ended = status in ENDED
        plan = None if ended else (catalog.plan(plan_key) if plan_key else catalog.default_plan)
        billed: dict[str, BilledMeter] = {}
        if plan is not None:
            if plan.key not in by_plan:
                by_plan[plan.key] = billed_meters(catalog, meters, plan)
            billed = by_plan[plan.key]
        context = Context(customer, EPOCH, plan.key if billed and plan else None, stripe_id, sub,
                          billed)  # fmt: skip
        out.append(Current(context, ceil_minute(changed), (start, end)))
    return out


def _encode(meters: dict[str, BilledMeter]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for k, m in meters.items():
        out[k] = {
            "aggregation": m.aggregation.value,
            "event_name": m.event_name,
            "stripe_meter_id": m.stripe_meter_id,
            "unit_amount_decimal": str(m.unit_amount_decimal),
            "currency": m.currency,
        }
        if m.price is not None:
            out[k]["price"] = m.price.to_document()
    return out


def _meters(raw: dict[str, dict[str, Any]]) -> dict[str, BilledMeter]:
    return {
        k: BilledMeter(
            k,
            Aggregation(v["aggregation"]),
            v["event_name"],
            v["stripe_meter_id"],
            Decimal(v["unit_amount_decimal"]),
            v["currency"],
            metered_price_from_document(v["price"]) if "price" in v else None,
        )
        for k, v in raw.items()
    }
