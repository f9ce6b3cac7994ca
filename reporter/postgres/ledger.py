"""The report ledger in Postgres (`report_ledger`): `reporter.ledger.ReportLedger`, and the
connection-level status changes a repair records in its own transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from meterline.postgres import Connection, Pool
from meterline.stripe.meter_events import SendResult
from reporter.ledger import LedgerRow, Reported, SlotKey
from reporter.slots import floor_hour

REPORTED = """
SELECT customer, meter, slot_start, max(revision),
       coalesce(sum(value) FILTER (WHERE status <> 'canceled'), 0),
       coalesce((array_agg(value ORDER BY revision DESC)
         FILTER (WHERE status <> 'canceled'))[1], 0)
FROM report_ledger WHERE tenant_id = %s AND slot_start >= %s AND slot_start < %s
GROUP BY 1, 2, 3
"""
# Each (customer, hour) is probed by index (LATERAL ... LIMIT 1): a join of the batch against
# the ledger was planned as a hash of all of `report_ledger` for 100 hours or more
# (tests/integration/test_plans.py).
LIVE_HOURS = """
SELECT DISTINCT p.customer, p.hour FROM unnest(%s::text[], %s::timestamptz[]) AS p(customer, hour)
CROSS JOIN LATERAL (
  SELECT 1 FROM report_ledger l
  WHERE l.tenant_id = %s AND l.customer = p.customer AND l.slot_start >= p.hour
    AND l.slot_start < p.hour + interval '1 hour' AND l.status IN ('sent', 'pending')
  LIMIT 1
) live
"""
SETTLE = """
UPDATE report_ledger l SET status = u.status, error = u.error,
       sent_at = coalesce(%s::timestamptz, now())
FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(identifier, status, error)
WHERE l.identifier = u.identifier AND l.status = 'pending'
"""
"""Pushed rows' outcomes, by identifier (tests/integration/test_plans.py reads its plan)."""

_COLUMNS = (
    "tenant_id, customer, meter, slot_start, revision, identifier, event_name, "
    "stripe_customer_id, value, total, status, error, created_at, sent_at"
)


class PostgresReportLedger:
    """`reporter.ledger.ReportLedger` in Postgres: one statement per call, batches as one
    COPY or one `unnest` UPDATE."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def reported(self, tenant_id: int, since: datetime, until: datetime) -> dict[SlotKey, Reported]:
        with self._pool.connection() as conn:
            rows = conn.execute(REPORTED, (tenant_id, since, until)).fetchall()
        return {(r[0], r[1], r[2]): Reported(r[3], r[4], r[5]) for r in rows}

    def add(self, rows: Sequence[LedgerRow], at: datetime | None = None) -> None:
        if not rows:
            return
        statement = f"COPY report_ledger ({_COLUMNS}) FROM STDIN".encode()
        with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor().copy(statement) as copy,
        ):
            for r in rows:
                copy.write_row(_tuple(r, at))

    def settle(self, results: Sequence[SendResult], at: datetime | None = None) -> None:
        if not results:
            return
        idents = [r.identifier for r in results]
        statuses = ["sent" if r.landed else "rejected" for r in results]
        errors = [r.error for r in results]
        with self._pool.connection() as conn:
            conn.execute(SETTLE, (at, idents, statuses, errors))

    def pending(self, tenants: Sequence[int] | None = None, limit: int = 10_000) -> list[LedgerRow]:
        return self._select(
            "WHERE status = 'pending' AND (%s::bigint[] IS NULL OR tenant_id = ANY(%s)) "
            "ORDER BY created_at, identifier LIMIT %s",
            (_ids(tenants), _ids(tenants), limit),
        )

    def window(
        self, tenant_id: int, customer: str, meter: str, start: datetime, end: datetime
    ) -> list[LedgerRow]:
        return self._select(
            "WHERE tenant_id = %s AND customer = %s AND meter = %s AND slot_start >= %s "
            "AND slot_start < %s ORDER BY slot_start, revision",
            (tenant_id, customer, meter, start, end),
        )

    def customer_window(
        self, tenant_id: int, customer: str, start: datetime, end: datetime
    ) -> list[LedgerRow]:
        return self._select(
            "WHERE tenant_id = %s AND customer = %s AND slot_start >= %s AND slot_start < %s "
            "ORDER BY slot_start, meter, revision",
            (tenant_id, customer, start, end),
        )

    def tenant_window(self, tenant_id: int, start: datetime, end: datetime) -> list[LedgerRow]:
        return self._select(
            "WHERE tenant_id = %s AND slot_start >= %s AND slot_start < %s "
            "ORDER BY slot_start, revision",
            (tenant_id, start, end),
        )

    def live_hours(
        self, tenant_id: int, hours: Sequence[tuple[str, datetime]]
    ) -> set[tuple[str, datetime]]:
        if not hours:
            return set()
        with self._pool.connection() as conn:
            rows = conn.execute(
                LIVE_HOURS,
                ([c for c, _ in hours], [floor_hour(at) for _, at in hours], tenant_id),
            ).fetchall()
        return {(r[0], r[1]) for r in rows}

    def mark_canceled(self, identifiers: Sequence[str]) -> None:
        with self._pool.connection() as conn:
            mark_canceled(conn, identifiers)

    def _select(self, where: str, params: tuple[Any, ...]) -> list[LedgerRow]:
        with self._pool.connection() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM report_ledger {where}".encode(), params)
            return [LedgerRow(*r) for r in rows.fetchall()]


def mark_canceled(conn: Connection, identifiers: Sequence[str]) -> None:
    """Rows Stripe canceled (on `conn`, so a repair records them with its log entry)."""
    if identifiers:
        conn.execute(
            "UPDATE report_ledger SET status = 'canceled' WHERE identifier = ANY(%s)",
            (list(identifiers),),
        )


def mark_received(conn: Connection, identifiers: Sequence[str], at: datetime) -> None:
    """Rows Stripe took again (a resend): `sent`, received at `at`, which restarts Stripe's
    identifier dedupe window for them."""
    if identifiers:
        conn.execute(
            "UPDATE report_ledger SET status = 'sent', error = NULL, sent_at = %s "
            "WHERE identifier = ANY(%s) AND status IN ('sent', 'pending')",
            (at, list(identifiers)),
        )


def _ids(tenants: Sequence[int] | None) -> list[int] | None:
    return None if tenants is None else list(tenants)


def _tuple(r: LedgerRow, at: datetime | None) -> tuple[Any, ...]:
    return (
        r.tenant_id, r.customer, r.meter, r.slot_start, r.revision, r.identifier, r.event_name,
        r.stripe_customer_id, r.value, r.total, r.status, r.error,
        r.created_at or at or datetime.now().astimezone(), r.sent_at,
    )  # fmt: skip
