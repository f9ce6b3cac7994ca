"""Daily partitions of the event ledger, created on demand and dropped after retention."""

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
    """Drop ledger partitions wholly older than `cutoff` (the dedupe window); rollups are kept."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'usage_events'"
    ).fetchall()
    dropped = []
    for (name,) in rows:
        if name < partition_name(cutoff):
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
            dropped.append(name)
    return dropped
