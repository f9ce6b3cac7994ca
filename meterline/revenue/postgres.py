"""`PostgresRevenueEventStore`: revenue events in `revenue_events` (migration 0018).

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

from meterline.revenue.model import Discount, Item, SubscriptionState
from meterline.revenue.store import RevenueEventStore

_INSERT = (
    "INSERT INTO revenue_events (tenant_id, event_id, at, customer, subscription, status, "
    "currency, items, discount) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (tenant_id, event_id) DO NOTHING"
)


class PostgresRevenueEventStore(RevenueEventStore):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def add(self, tenant_id: int, event_id: str, state: SubscriptionState) -> bool:
        with self._pool.connection() as conn:
            cur = conn.execute(_INSERT, _row(tenant_id, event_id, state))
            return cur.rowcount == 1

    def replace(self, tenant_id: int, states: Sequence[tuple[str, SubscriptionState]]) -> None:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("DELETE FROM revenue_events WHERE tenant_id = %s", (tenant_id,))
            cur.executemany(_INSERT, [_row(tenant_id, e, s) for e, s in states])

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
