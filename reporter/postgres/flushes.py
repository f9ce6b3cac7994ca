"""What the scheduler reads in Postgres to time period-end flushes: the boundaries recorded
(`report_boundaries`) and whether the aggregator counted events received after them
(`usage_events`, by receive time; the day bound lets Postgres skip older partitions)."""

from __future__ import annotations

from datetime import datetime, timedelta

from meterline.postgres import Pool
from reporter.scheduler import Waiting

_CUSTOMERS_PAST = """
SELECT w.i FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[])
WITH ORDINALITY AS w(t, c, at, i) WHERE EXISTS (SELECT 1 FROM usage_events e
WHERE e.tenant_id = w.t AND e.customer = w.c AND e.received_at >= w.at
AND e.day >= (w.at AT TIME ZONE 'UTC')::date - 1)"""


class PostgresFlushWatch:
    """`reporter.scheduler.FlushWatch` in Postgres."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def boundaries(self, after: datetime, until: datetime) -> list[Waiting]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT tenant_id, customer, at FROM report_boundaries "
                "WHERE at > %s AND at <= %s ORDER BY at",
                (after, until),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def customers_past(self, waiting: list[Waiting]) -> set[Waiting]:
        tenants, customers, ats = (list(column) for column in zip(*waiting, strict=True))
        with self._pool.connection() as conn:
            rows = conn.execute(_CUSTOMERS_PAST, (tenants, customers, ats)).fetchall()
        return {waiting[r[0] - 1] for r in rows}

    def any_past(self, at: datetime) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM usage_events WHERE received_at >= %s "
                "AND day >= %s::date)",
                (at, at - timedelta(days=1)),
            ).fetchone()
        return bool(row and row[0])
