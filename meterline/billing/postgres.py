"""The Postgres repository of checkout fulfilments (`checkout_fulfilments`, migration 0019)."""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool

from meterline.billing.fulfilments import Fulfilment, FulfilmentRepository
from meterline.entitlements import NewGrant
from meterline.entitlements.postgres import insert_grant


class PostgresFulfilmentRepository(FulfilmentRepository):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def fulfil(self, record: Fulfilment, grants: list[NewGrant]) -> bool:
        r = record
        with self._pool.connection() as conn, conn.transaction():
            claimed = conn.execute(
                "INSERT INTO checkout_fulfilments (session_id, tenant_id, customer, kind, item) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (session_id) DO NOTHING RETURNING 1",
                (r.session_id, r.tenant_id, r.customer, r.kind, r.item),
            ).fetchone()
            if claimed is None:
                return False
            ids = [insert_grant(conn, r.tenant_id, g).id for g in grants]
            conn.execute(
                "UPDATE checkout_fulfilments SET grant_ids = %s WHERE session_id = %s",
                (ids, r.session_id),
            )
        return True

    def get(self, session_id: str) -> Fulfilment | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT session_id, tenant_id, customer, kind, item, grant_ids "
                "FROM checkout_fulfilments WHERE session_id = %s",
                (session_id,),
            ).fetchone()
        return None if row is None else _row(row)


def _row(row: Any) -> Fulfilment:
    return Fulfilment(row[0], row[1], row[2], row[3], row[4], tuple(row[5]))
