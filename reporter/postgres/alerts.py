"""Reconciliation runs, alerts and the repairs log in Postgres (`reconciliation_runs`,
`reconciliation_alerts`, `reconciliation_repairs`): the store `reporter/alerts.py` describes.

A discrepancy found again updates the live alert of the same kind, customer, meter and window
(one upsert on the partial unique index of live alerts); one that finance resolved is not
raised again while its difference is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from meterline.errors import Conflict, NotFound
from meterline.notify.outbox import publish
from meterline.postgres import Connection, Pool
from reporter.alerts import (
    KINDS,
    Alert,
    Discrepancy,
    Run,
    check_filters,
    check_transition,
    raised,
    resolved,
)
from reporter.money import priced

_ALERT_COLS = ", ".join(f.name for f in fields(Alert))
_RUN_COLS = ", ".join(f.name for f in fields(Run))


class PostgresReconciliationStore:
    """`reporter.alerts.ReconciliationStore` in Postgres: `reconciliation_runs`,
    `reconciliation_alerts` and `reconciliation_repairs`."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def start_run(self, tenant_id: int, window: tuple[datetime, datetime], trigger: str) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO reconciliation_runs (tenant_id, window_start, window_end, trigger) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                (tenant_id, window[0], window[1], trigger),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def finish_run(
        self, run_id: int, hours: int, ours: Decimal, stripe: Decimal, alerts: int,
        error: str | None = None,
    ) -> None:  # fmt: skip
        status = "failed" if error else ("alerts" if alerts else "ok")
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE reconciliation_runs SET status = %s, finished_at = now(), "
                "hours_checked = %s, our_units = %s, stripe_units = %s, alerts = %s, error = %s "
                "WHERE id = %s",
                (status, hours, ours, stripe, alerts, error, run_id),
            )

    def runs(self, tenant_id: int, limit: int = 50) -> list[Run]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_RUN_COLS} FROM reconciliation_runs WHERE tenant_id = %s "
                "ORDER BY started_at DESC, id DESC LIMIT %s".encode(),
                (tenant_id, limit),
            ).fetchall()
        return [Run(*r) for r in rows]

    def record(
        self, tenant_id: int, run_id: int | None, found: Sequence[Discrepancy]
    ) -> tuple[list[int], set[int]]:
        """Raise or refresh an alert per discrepancy; returns (new ids, raised or refreshed ids)."""
        opened: list[int] = []
        touched: set[int] = set()
        with self._pool.connection() as conn, conn.transaction():
            for d in priced(conn, tenant_id, found):
                if _resolved_same(conn, tenant_id, d):
                    continue
                row = conn.execute(_UPSERT, _alert_params(tenant_id, run_id, d)).fetchone()
                assert row is not None
                touched.add(int(row[0]))
                if row[1]:
                    opened.append(int(row[0]))
                    publish(conn, raised(tenant_id, int(row[0]), d))
        return opened, touched

    def clear(
        self, tenant_id: int, run_id: int, window: tuple[datetime, datetime], seen: set[int]
    ) -> int:
        """Resolve live reconciliation alerts of the window that this run no longer found."""
        note = f"cleared automatically: run {run_id} found no discrepancy"
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "UPDATE reconciliation_alerts SET status = 'resolved', updated_at = now(), "
                "note = coalesce(note || ' / ', '') || %s "
                "WHERE tenant_id = %s AND status <> 'resolved' AND kind = ANY(%s) "
                "AND window_start >= %s AND window_start < %s AND NOT (id = ANY(%s)) "
                f"RETURNING {_ALERT_COLS}",
                (note, tenant_id, list(KINDS[:4]), window[0], window[1], list(seen)),
            ).fetchall()  # fmt: skip
            for row in rows:
                publish(conn, resolved(Alert(*row), "reconciliation"))
        return len(rows)

    def alerts(
        self, tenant_id: int, status: str | None = None, kind: str | None = None, limit: int = 500
    ) -> list[Alert]:
        check_filters(status, kind)
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_ALERT_COLS} FROM reconciliation_alerts WHERE tenant_id = %s "
                "AND (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR kind = %s) "
                "ORDER BY (status = 'resolved'), money_minor DESC NULLS LAST, id DESC "
                "LIMIT %s".encode(),
                (tenant_id, status, status, kind, kind, limit),
            ).fetchall()
        return [Alert(*r) for r in rows]

    def alert(self, tenant_id: int, alert_id: int) -> Alert:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {_ALERT_COLS} FROM reconciliation_alerts "
                "WHERE tenant_id = %s AND id = %s".encode(),
                (tenant_id, alert_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"no alert {alert_id}")
        return Alert(*row)

    def transition(self, tenant_id: int, alert_id: int, status: str, note: str | None) -> Alert:
        """Acknowledge or resolve; raises Conflict when the alert is already resolved and
        ValidationFailed for a bad status or note (`check_transition`)."""
        check_transition(status, note)
        current = self.alert(tenant_id, alert_id)
        if current.status == "resolved":
            raise Conflict(f"alert {alert_id} is already resolved")
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE reconciliation_alerts SET status = %s, updated_at = now(), "
                "note = CASE WHEN %s::text IS NULL OR %s = '' THEN note "
                f"ELSE coalesce(note || ' / ', '') || %s END WHERE id = %s "
                f"AND status <> 'resolved' RETURNING {_ALERT_COLS}",
                (status, note, note, note, alert_id),
            ).fetchone()
            if row is None:
                raise Conflict(f"alert {alert_id} is already resolved")
            if status == "resolved":
                publish(conn, resolved(Alert(*row), "finance"))
        return Alert(*row)

    def totals(self, tenant_id: int) -> dict[str, Any]:
        """Open and acknowledged alerts: count and money at risk per currency."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT status, coalesce(currency, ''), count(*), coalesce(sum(money_minor), 0) "
                "FROM reconciliation_alerts WHERE tenant_id = %s AND status <> 'resolved' "
                "GROUP BY 1, 2",
                (tenant_id,),
            ).fetchall()
        out: dict[str, Any] = {"open": 0, "acknowledged": 0, "money_minor": {}}
        for status, currency, count, money in rows:
            out[status] += count
            out["money_minor"][currency] = out["money_minor"].get(currency, 0) + float(money)
        return out

    def open_count(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM reconciliation_alerts WHERE status = 'open'"
            ).fetchone()
        return int(row[0]) if row else 0

    def last_success(self) -> datetime | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT max(finished_at) FROM reconciliation_runs WHERE status IN ('ok', 'alerts')"
            ).fetchone()
        return row[0] if row else None

    def add_repair(
        self, alert_id: int, action: str, identifiers: Sequence[str], outcome: str, actor: str
    ) -> None:
        with self._pool.connection() as conn:
            insert_repair(conn, alert_id, action, identifiers, outcome, actor)

    def repairs(self, alert_id: int) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT action, identifiers, outcome, actor, created_at "
                "FROM reconciliation_repairs "
                "WHERE alert_id = %s ORDER BY id",
                (alert_id,),
            ).fetchall()
        keys = ("action", "identifiers", "outcome", "actor", "created_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]


def insert_repair(
    conn: Connection,
    alert_id: int,
    action: str,
    identifiers: Sequence[str],
    outcome: str,
    actor: str,
) -> None:
    """Log one repair on `conn` (a repair writes it in the transaction of its ledger changes)."""
    conn.execute(
        "INSERT INTO reconciliation_repairs (alert_id, action, identifiers, outcome, actor) "
        "VALUES (%s, %s, %s, %s, %s)",
        (alert_id, action, list(identifiers), outcome, actor),
    )


_UPSERT = """
INSERT INTO reconciliation_alerts (tenant_id, run_id, kind, customer, meter, window_start,
    window_end, our_units, sent_units, stripe_units, difference, unit_amount_decimal, currency,
    money_minor, detail)
VALUES (%(tenant)s, %(run)s, %(kind)s, %(customer)s, %(meter)s, %(ws)s, %(we)s, %(ours)s,
    %(sent)s, %(stripe)s, %(diff)s, %(uad)s, %(currency)s, %(money)s, %(detail)s)
ON CONFLICT (tenant_id, kind, customer, meter, window_start) WHERE status <> 'resolved'
DO UPDATE SET run_id = EXCLUDED.run_id, our_units = EXCLUDED.our_units,
    sent_units = EXCLUDED.sent_units, stripe_units = EXCLUDED.stripe_units,
    difference = EXCLUDED.difference, money_minor = EXCLUDED.money_minor,
    detail = EXCLUDED.detail, updated_at = now()
RETURNING id, (xmax = 0)
"""


def _alert_params(tenant_id: int, run_id: int | None, d: Discrepancy) -> dict[str, Any]:
    return {
        "tenant": tenant_id, "run": run_id, "kind": d.kind, "customer": d.customer,
        "meter": d.meter, "ws": d.window_start, "we": d.window_end, "ours": d.our_units,
        "sent": d.sent_units, "stripe": d.stripe_units, "diff": d.difference,
        "uad": d.unit_amount_decimal, "currency": d.currency, "money": d.money_minor,
        "detail": d.detail,
    }  # fmt: skip


def _resolved_same(conn: Connection, tenant_id: int, d: Discrepancy) -> bool:
    row = conn.execute(
        "SELECT 1 FROM reconciliation_alerts WHERE tenant_id = %s AND kind = %s AND customer = %s "
        "AND meter = %s AND window_start = %s AND status = 'resolved' AND difference = %s LIMIT 1",
        (tenant_id, d.kind, d.customer, d.meter, d.window_start, d.difference),
    ).fetchone()
    return row is not None
