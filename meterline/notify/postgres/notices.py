"""The Postgres `NoticeLedger` (migration 0020): a notice's row and its outbox message in one
transaction, the row's primary key deciding which of racing writers announces it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg_pool import ConnectionPool

from meterline.entitlements.thresholds import Notice, NoticeKey, NoticeLedger
from meterline.notify.outbox import publish_many

_INSERT = """
INSERT INTO entitlement_notices (tenant_id, customer, feature, period_start, notice)
SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::timestamptz[], %b::text[])
ON CONFLICT DO NOTHING
RETURNING tenant_id, customer, feature, period_start, notice
"""


class PostgresNoticeLedger(NoticeLedger):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def record(self, found: Sequence[Notice]) -> int:
        """One transaction of two statements, however many notices (a detector's batch holds
        hundreds): the rows, then the outbox messages of those inserted, in `found`'s order."""
        if not found:
            return 0
        by_key: dict[tuple[int, str, str, datetime, str], Notice] = {}
        for n in found:
            by_key.setdefault(_row_key(n.key), n)  # a key twice: the first is announced
        columns = [list(c) for c in zip(*by_key, strict=True)]
        with self._pool.connection() as conn, conn.transaction():
            inserted = {tuple(r) for r in conn.execute(_INSERT, columns).fetchall()}
            new = [n.notification for k, n in by_key.items() if k in inserted]
            publish_many(conn, new)
        return len(new)


def _row_key(key: NoticeKey) -> tuple[int, str, str, datetime, str]:
    """A notice's key as the table's row holds it (the period start a timestamp)."""
    tenant_id, customer, feature, start, notice = key
    return tenant_id, customer, feature, datetime.fromisoformat(start), notice
