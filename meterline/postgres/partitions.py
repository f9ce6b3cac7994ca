"""Daily partitions of the event ledger, created on demand and dropped after retention with
the ids they counted."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import psycopg
from psycopg import sql


def partition_name(day: date) -> str:
    return f"usage_events_{day:%Y%m%d}"


class PartitionManager:
    """Creates the ledger partitions a batch needs; remembers which exist to skip the round trip."""

    def __init__(self) -> None:
        self._known: set[date] = set()

    def ensure(self, conn: psycopg.Connection, days: Iterable[date]) -> None:
        """Create missing day partitions. Safe when several processes race to create one."""
        for day in sorted(set(days) - self._known):
            create_day_partition(conn, day)
            self._known.add(day)


def create_day_partition(conn: psycopg.Connection, day: date) -> None:
    stmt = sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF usage_events FOR VALUES FROM ({}) TO ({})"
    ).format(
        sql.Identifier(partition_name(day)), day.isoformat(), (day + timedelta(days=1)).isoformat()
    )
    try:
        with conn.transaction():
            conn.execute(stmt)
    except (psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
        pass  # another process created it between our check and our CREATE


def drop_partitions_before(conn: psycopg.Connection, cutoff: date) -> list[str]:
    """Drop ledger partitions wholly older than `cutoff` (the dedupe window), each after its
    ids (`forget_ids`); rollups are kept. The names of the partitions dropped, oldest first.
    Safe to run again after a failure: a partition stays until its ids are gone."""
    dropped = []
    for name in partitions_before(conn, cutoff):
        forget_ids(conn, name)
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
        dropped.append(name)
    return dropped


def partitions_before(conn: psycopg.Connection, cutoff: date) -> list[str]:
    """The ledger partitions wholly older than `cutoff`, oldest first."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'usage_events'"
    ).fetchall()
    return sorted(name for (name,) in rows if name < partition_name(cutoff))


# The ids of a page range of a ledger partition, each found through the id table's key: the
# LATERAL subquery with its LIMIT cannot be flattened into a join, so no plan scans the whole
# id table (a hash join would, once a range holds enough rows).
_FORGET = """
DELETE FROM usage_event_ids WHERE ctid = ANY(ARRAY(
    SELECT i.ctid FROM {} e CROSS JOIN LATERAL (
        SELECT ctid FROM usage_event_ids
        WHERE tenant_id = e.tenant_id AND event_id = e.event_id AND day = e.day LIMIT 1
    ) i
    WHERE e.ctid >= %s::tid AND e.ctid < %s::tid
))
"""


def forget_ids(conn: psycopg.Connection, partition: str, pages: int = 1_000) -> int:
    """Delete from `usage_event_ids` the ids counted by the rows of ledger partition
    `partition`, `pages` heap pages of it per `DELETE` (each its own transaction under
    autocommit): the id table keeps no index but its key, so the partition lists the ids to
    delete and the key finds each. An id that a later day's row holds (a copy counted twice
    before migration 0008) stays until that day's partition goes. The number deleted."""
    row = conn.execute(
        "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::bigint",
        (partition,),
    ).fetchone()
    stmt = sql.SQL(_FORGET).format(sql.Identifier(partition))
    deleted = 0
    for start in range(0, int(row[0]) if row else 0, pages):
        cur = conn.execute(stmt, (f"({start},0)", f"({start + pages},0)"))
        deleted += cur.rowcount
    return deleted
