"""What a push reads in Postgres beside the ledger and the contexts: the push lock (an advisory
lock, one push at a time), the tenants, the subscriptions changed since a moment, and the
slots' usage (`reporter/postgres/rollups.py`'s queries, folded by `reporter/rollups.py`).
`reporter.push.PushRecords`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from meterline.postgres import Pool
from reporter.postgres import rollups as queries
from reporter.postgres.scope import tenant_ids
from reporter.rollups import period_maxima
from reporter.scope import TenantScope
from reporter.slots import HOUR, SlotUsage

LOCK_KEY = 7_301_001
"""The push lock (the scheduler's leadership holds 7_301_002)."""


class PostgresPushRecords:
    """`reporter.push.PushRecords` in Postgres."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @contextmanager
    def lock(self) -> Iterator[bool]:
        with self._pool.connection() as conn:
            conn.autocommit = True
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
            held = bool(row and row[0])
            try:
                yield held
            finally:
                if held:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))

    def tenant_ids(self) -> list[int]:
        return tenant_ids(self._pool)

    def now(self) -> datetime:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        now: datetime = row[0]
        return now

    def changed_subscriptions(self, since: datetime) -> list[tuple[int, list[str]]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT tenant_id, array_agg(customer) FROM subscriptions "
                "WHERE updated_at >= %s GROUP BY 1",
                (since,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def usage(
        self, scope: TenantScope, since: datetime, until: datetime, received_since: datetime
    ) -> list[SlotUsage]:
        tenant_id = scope.tenant_id
        with self._pool.connection() as conn:
            usage = queries.slot_usage(conn, tenant_id, since, until)
            late = queries.late_hours(conn, tenant_id, received_since, since)
            for hour in late:
                usage.extend(queries.slot_usage(conn, tenant_id, hour, hour + HOUR))
            return period_maxima(conn, scope, usage, min([since, *late]), since)
