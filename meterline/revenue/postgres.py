"""`PostgresRevenueEventStore`: revenue events in `revenue_events` (migration 0018), closed
invoices' metered amounts in `revenue_invoices` (migration 0024).

Items and the discount are kept as JSON in the shape of `model.Item` and `model.Discount`;
the primary key (tenant_id, event_id) makes a redelivered webhook a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from meterline.revenue.model import Discount, Item, MeteredInvoice, SubscriptionState
from meterline.revenue.store import RevenueEventStore

_INSERT = (
    "INSERT INTO revenue_events (tenant_id, event_id, at, customer, subscription, status, "
    "currency, items, discount) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (tenant_id, event_id) DO NOTHING"
)

# The status only moves forward (meterline/revenue/invoices.py, RANK): a row is replaced only
# by a sighting at least as far along.
_RANK = "CASE {} WHEN 'open' THEN 0 WHEN 'uncollectible' THEN 1 ELSE 2 END"
_UPSERT_INVOICE = (
    "INSERT INTO revenue_invoices (tenant_id, invoice, at, customer, currency, amount, status) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, invoice) DO UPDATE SET "
    "at = excluded.at, customer = excluded.customer, currency = excluded.currency, "
    "amount = excluded.amount, status = excluded.status "
    f"WHERE {_RANK.format('excluded.status')} >= {_RANK.format('revenue_invoices.status')} "
    "AND (revenue_invoices.status, revenue_invoices.amount, revenue_invoices.at) "
    "IS DISTINCT FROM (excluded.status, excluded.amount, excluded.at)"
)


class PostgresRevenueEventStore(RevenueEventStore):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def add(self, tenant_id: int, event_id: str, state: SubscriptionState) -> bool:
        with self._pool.connection() as conn:
            cur = conn.execute(_INSERT, _row(tenant_id, event_id, state))
            return cur.rowcount == 1

    def replace(
        self,
        tenant_id: int,
        states: Sequence[tuple[str, SubscriptionState]],
        invoices: Sequence[MeteredInvoice] | None = None,
    ) -> None:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("DELETE FROM revenue_events WHERE tenant_id = %s", (tenant_id,))
            cur.executemany(_INSERT, [_row(tenant_id, e, s) for e, s in states])
            if invoices is not None:
                cur.execute("DELETE FROM revenue_invoices WHERE tenant_id = %s", (tenant_id,))
                cur.executemany(_UPSERT_INVOICE, [_invoice_row(tenant_id, i) for i in invoices])

    def add_invoice(self, tenant_id: int, invoice: MeteredInvoice) -> bool:
        with self._pool.connection() as conn:
            cur = conn.execute(_UPSERT_INVOICE, _invoice_row(tenant_id, invoice))
            return cur.rowcount == 1

    def invoices(self, tenant_id: int) -> list[MeteredInvoice]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT at, customer, invoice, currency, amount, status FROM revenue_invoices "
                "WHERE tenant_id = %s ORDER BY at, invoice",
                (tenant_id,),
            ).fetchall()
        return [MeteredInvoice(*r) for r in rows]

    def states(self, tenant_id: int) -> list[SubscriptionState]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT at, customer, subscription, status, currency, items, discount "
                "FROM revenue_events WHERE tenant_id = %s ORDER BY at, seq",
                (tenant_id,),
            ).fetchall()
        return [_state(*r) for r in rows]


def _row(tenant_id: int, event_id: str, s: SubscriptionState) -> tuple[Any, ...]:
    items = Jsonb([asdict(i) for i in s.items])
    discount = None if s.discount is None else Jsonb(_discount_doc(s.discount))
    return (
        tenant_id,
        event_id,
        s.at,
        s.customer,
        s.subscription,
        s.status,
        s.currency,
        items,
        discount,
    )


def _invoice_row(tenant_id: int, i: MeteredInvoice) -> tuple[Any, ...]:
    return (tenant_id, i.invoice, i.at, i.customer, i.currency, i.amount, i.status)


def _discount_doc(d: Discount) -> dict[str, Any]:
    percent = None if d.percent_off is None else str(d.percent_off)
    return {"duration": d.duration, "percent_off": percent, "amount_off": d.amount_off}


def _state(
    at: Any, customer: str, sub: str, status: str, currency: str, items: Any, discount: Any
) -> SubscriptionState:
    return SubscriptionState(
        at, customer, sub, status, currency, tuple(Item(**i) for i in items), _discount(discount)
    )


def _discount(doc: dict[str, Any] | None) -> Discount | None:
    if doc is None:
        return None
    percent = doc.get("percent_off")
    return Discount(
        doc["duration"], None if percent is None else Decimal(percent), doc.get("amount_off")
    )
