"""Billing contexts and boundaries in Postgres: `report_contexts` (each context's meters as a
JSON document), `report_boundaries`, and the customers' current state (`customers`,
`subscriptions`, the catalog, the Stripe meters) they are compared with. `reporter.contexts.
ContextStore`; the rules are `reporter/contexts.py`'s and `reporter/boundaries.py`'s."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from meterline.catalog.model import Aggregation
from meterline.catalog.parse import metered_price_from_document
from meterline.catalog.repository import PostgresCatalogRepository
from meterline.postgres import Connection, Pool
from reporter.contexts import Context, ContextHistory, Current, State, current_contexts
from reporter.postgres.scope import stripe_meters
from reporter.scope import BilledMeter

_STATES = """
SELECT c.id, c.stripe_customer_id, s.plan, s.status, s.stripe_subscription_id,
       s.current_period_start, s.current_period_end,
       coalesce(to_timestamp(s.stripe_event_created), s.updated_at, c.created_at)
FROM customers c LEFT JOIN subscriptions s ON s.tenant_id = c.tenant_id AND s.customer = c.id
WHERE c.tenant_id = %s AND c.stripe_customer_id IS NOT NULL
  AND (%s::text[] IS NULL OR c.id = ANY(%s))"""


class PostgresContextStore:
    """`reporter.contexts.ContextStore` in Postgres."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def history(self, tenant_id: int, customers: Sequence[str] | None = None) -> ContextHistory:
        with self._pool.connection() as conn:
            return load_history(conn, tenant_id, customers)

    def current(self, tenant_id: int, customers: Sequence[str] | None = None) -> list[Current]:
        only = _only(customers)
        found = PostgresCatalogRepository(self._pool).current(tenant_id)
        if found is None:
            return []
        with self._pool.connection() as conn:
            meters = stripe_meters(conn, tenant_id)
            rows = conn.execute(_STATES, (tenant_id, only, only)).fetchall()
        return current_contexts(found[1], meters, [State(*r) for r in rows])

    def boundaries(
        self, tenant_id: int, customers: Sequence[str] | None = None
    ) -> dict[str, list[datetime]]:
        only = _only(customers)
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT customer, at FROM report_boundaries WHERE tenant_id = %s "
                "AND (%s::text[] IS NULL OR customer = ANY(%s))",
                (tenant_id, only, only),
            ).fetchall()
        out: dict[str, list[datetime]] = {}
        for customer, at in rows:
            out.setdefault(customer, []).append(at)
        return out

    def record(
        self,
        tenant_id: int,
        boundaries: Sequence[tuple[str, datetime]],
        contexts: Sequence[Context],
    ) -> None:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO report_boundaries (tenant_id, customer, at) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [(tenant_id, customer, at) for customer, at in boundaries],
            )
            if contexts:
                cur.execute(_INSERT_CONTEXTS, (tenant_id, *_columns(contexts)))


_INSERT_CONTEXTS = """
INSERT INTO report_contexts (tenant_id, customer, since, plan, stripe_customer_id,
                             stripe_subscription_id, meters)
SELECT %s, c.customer, c.since, c.plan, c.stripe_customer_id, c.subscription,
       (%s::jsonb[])[c.document]
FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::int[])
     AS c(customer, since, plan, stripe_customer_id, subscription, document)
ON CONFLICT DO NOTHING"""


def _columns(contexts: Sequence[Context]) -> tuple[list[Any], ...]:
    """The parameters of `_INSERT_CONTEXTS`: each distinct meters document once (contexts of
    one plan share one mapping, `current_contexts`), then the contexts as columns, each with the
    1-based index of its document."""
    index: dict[int, int] = {}
    documents: list[str] = []
    for c in contexts:
        if id(c.meters) not in index:
            documents.append(json.dumps(_encode(c.meters)))
            index[id(c.meters)] = len(documents)
    return (
        documents, [c.customer for c in contexts], [c.since for c in contexts],
        [c.plan for c in contexts], [c.stripe_customer_id for c in contexts],
        [c.subscription for c in contexts], [index[id(c.meters)] for c in contexts],
    )  # fmt: skip


def load_history(
    conn: Connection, tenant_id: int, customers: Sequence[str] | None = None
) -> ContextHistory:
    """The tenant's recorded contexts (only `customers`' when given), read on `conn`;
    identical meter sets are decoded once."""
    only = _only(customers)
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


def _only(customers: Sequence[str] | None) -> list[str] | None:
    return None if customers is None else list(customers)


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
