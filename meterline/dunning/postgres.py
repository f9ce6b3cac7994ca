"""The Postgres repository of dunning sequences (`dunning_sequences`, migration 0022).

`change` runs in one transaction: a transaction-level advisory lock on (tenant, invoice) (a
row lock cannot hold a sequence that does not exist yet), the read, the caller's function,
the upsert with the next timed step's time, and the notifications into the outbox. Nothing
else of the same invoice runs in between; the lock ends with the transaction, also when the
process dies.
"""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType
from typing import Any

from psycopg.types.json import Jsonb

from meterline.dunning.model import DunningPolicy, Sequence
from meterline.dunning.repository import Change, DunningRepository
from meterline.notify.outbox import publish
from meterline.postgres import Pool

COLUMNS = (
    "tenant_id, customer, invoice_id, subscription_id, plan, started_at, attempt_count, "
    "next_payment_attempt, update_url, amount_due, currency, steps, downgraded_to, ended, ended_at"
)
_UPSERT = f"""
INSERT INTO dunning_sequences ({COLUMNS}, next_step_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, invoice_id) DO UPDATE SET
    attempt_count = EXCLUDED.attempt_count, next_payment_attempt = EXCLUDED.next_payment_attempt,
    update_url = EXCLUDED.update_url, amount_due = EXCLUDED.amount_due, steps = EXCLUDED.steps,
    downgraded_to = EXCLUDED.downgraded_to, ended = EXCLUDED.ended, ended_at = EXCLUDED.ended_at,
    next_step_at = EXCLUDED.next_step_at, updated_at = now()
"""


class PostgresDunningRepository(DunningRepository):
    def __init__(self, pool: Pool, policy: DunningPolicy) -> None:
        self._pool = pool
        self._policy = policy

    def change(self, tenant_id: int, invoice_id: str, fn: Change) -> Sequence | None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"dunning\x1f{tenant_id}\x1f{invoice_id}",),
            )
            seq, notifications = fn(_one(conn, tenant_id, invoice_id))
            if seq is not None:
                conn.execute(_UPSERT, (*_values(seq), self._next_at(seq)))
            for notification in notifications:
                publish(conn, notification)
        return seq

    def get(self, tenant_id: int, invoice_id: str) -> Sequence | None:
        with self._pool.connection() as conn:
            return _one(conn, tenant_id, invoice_id)

    def due(self, now: datetime, limit: int = 100) -> list[tuple[int, str]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT tenant_id, invoice_id FROM dunning_sequences "
                "WHERE next_step_at IS NOT NULL AND next_step_at <= %s "
                "ORDER BY next_step_at LIMIT %s",
                (now, limit),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def open_for(self, subscription_id: str) -> list[tuple[int, str]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT tenant_id, invoice_id FROM dunning_sequences "
                "WHERE subscription_id = %s AND ended IS NULL",
                (subscription_id,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def has_open(self, invoice_id: str) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM dunning_sequences "
                "WHERE invoice_id = %s AND ended IS NULL)",
                (invoice_id,),
            ).fetchone()
        return bool(row and row[0])

    def current(self, tenant_id: int, customer: str) -> Sequence | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM dunning_sequences WHERE tenant_id = %s AND customer = %s "
                "AND ended IS NULL ORDER BY started_at DESC LIMIT 1",
                (tenant_id, customer),
            ).fetchone()
        return None if row is None else _sequence(row)

    def _next_at(self, seq: Sequence) -> datetime | None:
        nxt = seq.next_step(self._policy)
        return None if nxt is None else nxt[1]


def _one(conn: Any, tenant_id: int, invoice_id: str) -> Sequence | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM dunning_sequences WHERE tenant_id = %s AND invoice_id = %s",
        (tenant_id, invoice_id),
    ).fetchone()
    return None if row is None else _sequence(row)


def _values(s: Sequence) -> tuple[Any, ...]:
    steps = Jsonb({step: at.isoformat() for step, at in s.steps.items()})
    return (
        s.tenant_id, s.customer, s.invoice_id, s.subscription_id, s.plan, s.started_at,
        s.attempt_count, s.next_payment_attempt, s.update_url, s.amount_due, s.currency, steps,
        s.downgraded_to, s.ended, s.ended_at,
    )  # fmt: skip


def _sequence(row: Any) -> Sequence:
    steps = {step: datetime.fromisoformat(at) for step, at in row[11].items()}
    return Sequence(
        tenant_id=row[0], customer=row[1], invoice_id=row[2], subscription_id=row[3],
        plan=row[4], started_at=row[5], attempt_count=row[6], next_payment_attempt=row[7],
        update_url=row[8], amount_due=row[9], currency=row[10], steps=MappingProxyType(steps),
        downgraded_to=row[12], ended=row[13], ended_at=row[14],
    )  # fmt: skip
