"""The Postgres `NoticeLedger` (migration 0020): a notice's row and its outbox message in one
transaction, the row's primary key deciding which of racing writers announces it.

Two forms of the same transaction: a consume's answer records a notice or two, row by row (two
small statements each); the detector's batch records hundreds, as arrays (two statements in
all). Each is the cheaper for its size: the arrays' dumping costs more than a row's statements
for one notice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg_pool import ConnectionPool

from meterline.entitlements.thresholds import Notice, NoticeKey, NoticeLedger
from meterline.notify.outbox import publish, publish_many

_INSERT = """
INSERT INTO entitlement_notices (tenant_id, customer, feature, period_start, notice)
VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1
"""
_INSERT_MANY = """
INSERT INTO entitlement_notices (tenant_id, customer, feature, period_start, notice)
SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::timestamptz[], %b::text[])
ON CONFLICT DO NOTHING
RETURNING tenant_id, customer, feature, period_start, notice
"""
ARRAYS_FROM = 8
"""Notices from which one `record` writes them as arrays."""


class PostgresNoticeLedger(NoticeLedger):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def record(self, found: Sequence[Notice]) -> int:
        """The rows, then the outbox messages of those inserted, in `found`'s order, in one
        transaction (a key twice in `found`: the first is announced)."""
        if not found:
            return 0
        with self._pool.connection() as conn, conn.transaction():
            if len(found) < ARRAYS_FROM:
                return _by_rows(conn, found)
            return _as_arrays(conn, found)


def _by_rows(conn: Connection[Any], found: Sequence[Notice]) -> int:
    new = 0
    for notice in found:
        if conn.execute(_INSERT, notice.key).fetchone() is not None:
            publish(conn, notice.notification)
            new += 1
    return new


def _as_arrays(conn: Connection[Any], found: Sequence[Notice]) -> int:
    by_key: dict[tuple[int, str, str, datetime, str], Notice] = {}
    for n in found:
        by_key.setdefault(_row_key(n.key), n)
    columns = [list(c) for c in zip(*by_key, strict=True)]
    inserted = {tuple(r) for r in conn.execute(_INSERT_MANY, columns).fetchall()}
    new = [n.notification for k, n in by_key.items() if k in inserted]
    publish_many(conn, new)
    return len(new)


def _row_key(key: NoticeKey) -> tuple[int, str, str, datetime, str]:
    """A notice's key as the table's row holds it (the period start a timestamp)."""
    tenant_id, customer, feature, start, notice = key
    return tenant_id, customer, feature, datetime.fromisoformat(start), notice
