"""The report ledger: every meter event we send to Stripe, written before the call.

A row is added as `pending` in its own committed transaction BEFORE the Stripe call and
settled (`sent`, or `rejected` with Stripe's reason) after Stripe answered. A crash in between
leaves `pending`; the next run resends those rows with the same identifier, and Stripe's
identifier dedupe (the duplicate-identifier 400, or the stream dropping the repeat) makes the
resend harmless. `canceled` rows were withdrawn from Stripe by a repair.

What a slot has *accounted for* (`Reported`) counts pending, sent and rejected rows alike — a
rejected row has raised its alert and is not sent again — but never canceled ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from meterline.stripe.meter_events import MeterEvent, SendResult
from reporter.slots import event_timestamp

SlotKey = tuple[str, str, datetime]
_COLUMNS = (
    "tenant_id, customer, meter, slot_start, revision, identifier, event_name, "
    "stripe_customer_id, value, total, status, error, created_at, sent_at"
)


@dataclass(frozen=True, slots=True)
class LedgerRow:
    tenant_id: int
    customer: str
    meter: str
    slot_start: datetime
    revision: int
    identifier: str
    event_name: str
    stripe_customer_id: str
    value: Decimal
    total: Decimal
    status: str = "pending"
    error: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None

    def event(self) -> MeterEvent:
        return MeterEvent(
            self.event_name,
            self.stripe_customer_id,
            self.value,
            event_timestamp(self.slot_start, self.revision),
            self.identifier,
        )


@dataclass(frozen=True, slots=True)
class Reported:
    """What a slot has accounted for: its last revision, the sum of its values, the last value."""

    revision: int
    summed: Decimal
    last: Decimal


class ReportLedger:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def reported(self, tenant_id: int, since: datetime, until: datetime) -> dict[SlotKey, Reported]:
        """Per slot starting in [since, until): see `Reported`."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT customer, meter, slot_start, max(revision), "
                "coalesce(sum(value) FILTER (WHERE status <> 'canceled'), 0), "
                "coalesce((array_agg(value ORDER BY revision DESC) "
                "  FILTER (WHERE status <> 'canceled'))[1], 0) "
                "FROM report_ledger WHERE tenant_id = %s AND slot_start >= %s AND slot_start < %s "
                "GROUP BY 1, 2, 3",
                (tenant_id, since, until),
            ).fetchall()
        return {(r[0], r[1], r[2]): Reported(r[3], r[4], r[5]) for r in rows}

    def add(self, rows: Sequence[LedgerRow], at: datetime | None = None) -> None:
        """Insert rows in one committed transaction (COPY); they are durable on return. A row
        without `created_at` is dated `at` (the reporter's clock, which judges how long a row
        stayed unconfirmed), else now."""
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
        """Record Stripe's answers: landed events become `sent`, refused ones `rejected`;
        `sent_at` is `at` (the reporter's clock), else Postgres's."""
        if not results:
            return
        idents = [r.identifier for r in results]
        statuses = ["sent" if r.landed else "rejected" for r in results]
        errors = [r.error for r in results]
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE report_ledger l SET status = u.status, error = u.error, "
                "sent_at = coalesce(%s::timestamptz, now()) "
                "FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(identifier, status, error) "
                "WHERE l.identifier = u.identifier AND l.status = 'pending'",
                (at, idents, statuses, errors),
            )

    def pending(self, tenants: Sequence[int] | None = None, limit: int = 10_000) -> list[LedgerRow]:
        """Rows written but not settled (a crash or an outage came in between), oldest first;
        only those of `tenants` when given."""
        return self._select(
            "WHERE status = 'pending' AND (%s::bigint[] IS NULL OR tenant_id = ANY(%s)) "
            "ORDER BY created_at, identifier LIMIT %s",
            (_ids(tenants), _ids(tenants), limit),
        )

    def window(
        self, tenant_id: int, customer: str, meter: str, start: datetime, end: datetime
    ) -> list[LedgerRow]:
        """Every row of one customer's meter with a slot starting in [start, end)."""
        return self._select(
            "WHERE tenant_id = %s AND customer = %s AND meter = %s AND slot_start >= %s "
            "AND slot_start < %s ORDER BY slot_start, revision",
            (tenant_id, customer, meter, start, end),
        )

    def customer_window(
        self, tenant_id: int, customer: str, start: datetime, end: datetime
    ) -> list[LedgerRow]:
        """Every row of one customer's slots starting in [start, end), all meters."""
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

    def mark_canceled(self, identifiers: Sequence[str]) -> None:
        with self._pool.connection() as conn:
            mark_canceled(conn, identifiers)

    def _select(self, where: str, params: tuple[Any, ...]) -> list[LedgerRow]:
        with self._pool.connection() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM report_ledger {where}".encode(), params)
            return [LedgerRow(*r) for r in rows.fetchall()]


def mark_canceled(conn: psycopg.Connection[Any], identifiers: Sequence[str]) -> None:
    """Rows Stripe canceled (on `conn`, so a repair records them with its log entry)."""
    if identifiers:
        conn.execute(
            "UPDATE report_ledger SET status = 'canceled' WHERE identifier = ANY(%s)",
            (list(identifiers),),
        )


def mark_received(conn: psycopg.Connection[Any], identifiers: Sequence[str], at: datetime) -> None:
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
