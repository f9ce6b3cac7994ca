"""The Postgres `NoticeLedger` (migration 0020): a notice's row and its outbox message in one
transaction, the row's primary key deciding which of racing writers announces it."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg_pool import ConnectionPool

from meterline.entitlements.thresholds import Notice, NoticeLedger
from meterline.notify.outbox import publish_many

_INSERT = """
INSERT INTO entitlement_notices (tenant_id, customer, feature, period_start, notice)
VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1
"""


class PostgresNoticeLedger(NoticeLedger):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def record(self, found: Sequence[Notice]) -> int:
        """One transaction: every notice's insert in one pipelined round trip, then the outbox
        messages of those it inserted, again in one (a detector's batch holds hundreds)."""
        if not found:
            return 0
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(_INSERT, [n.key for n in found], returning=True)
            new = []
            for notice in found:
                if cur.fetchone() is not None:
                    new.append(notice.notification)
                cur.nextset()
            publish_many(conn, new)
        return len(new)
