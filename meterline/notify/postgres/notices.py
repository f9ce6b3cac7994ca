"""The Postgres `NoticeLedger` (migration 0020): a notice's row and its outbox message in one
transaction, the row's primary key deciding which of racing writers announces it."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg_pool import ConnectionPool

from meterline.entitlements.thresholds import Notice, NoticeLedger
from meterline.notify.outbox import publish

_INSERT = """
INSERT INTO entitlement_notices (tenant_id, customer, feature, period_start, notice)
VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1
"""


class PostgresNoticeLedger(NoticeLedger):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def record(self, found: Sequence[Notice]) -> int:
        new = 0
        with self._pool.connection() as conn, conn.transaction():
            for notice in found:
                if conn.execute(_INSERT, notice.key).fetchone() is not None:
                    publish(conn, notice.notification)
                    new += 1
        return new
