"""Reconciliation runs and alerts in Postgres, and the status finance moves them through.

An alert is one discrepancy for one customer, meter and window (an hour): its kind, our units
(rollups), the units we sent, Stripe's units, the difference (Stripe minus what it should
hold) and the money: what the period's invoice is off by at the frozen price (`money.py`).
A discrepancy found again by a later run updates the live (open or acknowledged) alert of the
same kind, customer, meter and window instead of adding a second one; one that finance
resolved is not raised again while its difference is unchanged. Status moves open ->
acknowledged -> resolved (or open -> resolved), each time with an optional note; a resolved
alert cannot change again. Opening an alert and resolving one (by finance or by a run) is
announced to webhooks (`reconciliation.alert_raised`, `reconciliation.alert_resolved`) in
the transaction of the change.

The kinds (`KINDS`), when each is raised, and its difference:

- `missing_in_stripe`: Stripe holds none of the hour, or lacks exactly one of our events;
  difference Stripe - sent.
- `extra_in_stripe`: Stripe holds usage we never sent, or exactly one event twice; Stripe - sent.
- `value_mismatch`: any other Stripe != sent; Stripe - sent.
- `not_reported`: ours != what the ledger accounted for; sent - ours.
- `too_late_for_stripe`, `rejected_by_stripe`: raised by pushes.
- `split_after_push`: a boundary learned after its hour was pushed, too late to cancel; the
  units after it.
- `after_invoice_finalized`: Stripe received the hour's usage after its period's invoice was
  finalized; the units received late.
- `flush_blocked`: the period-end flush ran before the aggregator was past the boundary
  (meter `*`); 0.

The first four are reconciliation's own (`reconcile.classify`): a live one of them that a
later run over its window no longer observes is resolved automatically with a note (`clear`).
New alerts are posted to `METERLINE_REPORTER_NOTIFY_WEBHOOK_URL` (Slack-compatible
`{"text": ...}`, `notify.py`). Every CSV (the API's and `/finance/alerts.csv`) is written by
`to_csv` through `meterline.csv_export`: a text cell starting with `=`, `+`, `-`, `@`, tab or
CR gets a leading `'`, text is quoted, numbers bare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg_pool import ConnectionPool

from meterline import csv_export
from meterline.errors import Conflict, FieldError, NotFound, ValidationFailed
from meterline.inputs import FREE_TEXT, MESSAGES, is_free_text
from meterline.notify.events import Notification
from meterline.notify.outbox import publish
from reporter.money import priced

KINDS = (
    "missing_in_stripe",
    "extra_in_stripe",
    "value_mismatch",
    "not_reported",
    "too_late_for_stripe",
    "rejected_by_stripe",
    "split_after_push",
    "after_invoice_finalized",
    "flush_blocked",
)
STATUSES = ("open", "acknowledged", "resolved")


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: str
    customer: str
    meter: str
    window_start: datetime
    window_end: datetime
    our_units: Decimal
    sent_units: Decimal
    stripe_units: Decimal | None
    difference: Decimal
    unit_amount_decimal: Decimal | None = None
    currency: str | None = None
    detail: str | None = None
    money: Decimal | None = None  # set by `reporter.money.priced` from the frozen price

    @property
    def money_minor(self) -> Decimal | None:
        """The money at stake: priced on the period's invoice when known (`money`), else at
        the marginal unit price."""
        if self.money is not None:
            return self.money
        if self.unit_amount_decimal is None:
            return None
        return abs(self.difference) * self.unit_amount_decimal


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    tenant_id: int
    run_id: int | None
    kind: str
    customer: str
    meter: str
    window_start: datetime
    window_end: datetime
    our_units: Decimal
    sent_units: Decimal
    stripe_units: Decimal | None
    difference: Decimal
    unit_amount_decimal: Decimal | None
    currency: str | None
    money_minor: Decimal | None
    status: str
    note: str | None
    detail: str | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Decimal):
                value = float(value)
            elif isinstance(value, datetime):
                value = value.isoformat().replace("+00:00", "Z")
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    tenant_id: int
    window_start: datetime
    window_end: datetime
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    hours_checked: int
    our_units: Decimal
    stripe_units: Decimal
    alerts: int
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return Alert.as_dict(self)  # type: ignore[arg-type]


_ALERT_COLS = ", ".join(f.name for f in fields(Alert))
_RUN_COLS = ", ".join(f.name for f in fields(Run))


class ReconciliationStore:
    def __init__(self, pool: ConnectionPool) -> None:
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
        if status is not None and status not in STATUSES:
            raise ValidationFailed([FieldError("status", f"must be one of {', '.join(STATUSES)}")])
        if kind is not None and kind not in KINDS:
            raise ValidationFailed([FieldError("kind", f"must be one of {', '.join(KINDS)}")])
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
        ValidationFailed for a note over 2000 characters or with control characters (the
        /finance forms reach here without a request model)."""
        if status not in ("acknowledged", "resolved"):
            raise ValidationFailed([FieldError("status", "must be acknowledged or resolved")])
        if note is not None and len(note) > 2000:
            raise ValidationFailed([FieldError("note", "at most 2000 characters")])
        if note is not None and not is_free_text(note):
            raise ValidationFailed([FieldError("note", MESSAGES[FREE_TEXT])])
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
    conn: Any, alert_id: int, action: str, identifiers: Sequence[str], outcome: str, actor: str
) -> None:
    """Log one repair on `conn` (a repair writes it in the transaction of its ledger changes)."""
    conn.execute(
        "INSERT INTO reconciliation_repairs (alert_id, action, identifiers, outcome, actor) "
        "VALUES (%s, %s, %s, %s, %s)",
        (alert_id, action, list(identifiers), outcome, actor),
    )


CSV_COLUMNS = (
    "id", "kind", "status", "customer", "meter", "window_start", "window_end", "our_units",
    "sent_units", "stripe_units", "difference", "money_minor", "currency", "note", "created_at",
)  # fmt: skip


def to_csv(alerts: Sequence[Alert]) -> str:
    """Alerts as CSV (one header row), numbers as plain decimals, times in ISO 8601 UTC; text
    neutralised against formula injection (`meterline.csv_export`)."""
    rows = ([a.as_dict()[c] for c in CSV_COLUMNS] for a in alerts)
    return csv_export.to_csv(CSV_COLUMNS, rows)


def raised(tenant_id: int, alert_id: int, d: Discrepancy) -> Notification:
    """`reconciliation.alert_raised` for a newly opened alert."""
    data = {"alert_id": alert_id, **{f.name: getattr(d, f.name) for f in fields(Discrepancy)},
            "money_minor": d.money_minor}  # fmt: skip
    return Notification(tenant_id, "reconciliation.alert_raised", datetime.now(UTC),
                        _plain(data), d.customer, key=f"alert:{alert_id}:raised")  # fmt: skip


def resolved(alert: Alert, by: str) -> Notification:
    """`reconciliation.alert_resolved`; `by` is `finance` or `reconciliation` (a later run
    no longer found the discrepancy)."""
    shown = alert.as_dict()
    data = {"alert_id": alert.id, "resolved_by": by,
            **{k: shown[k] for k in ("kind", "customer", "meter", "window_start", "window_end",
                                     "difference", "note")}}  # fmt: skip
    return Notification(alert.tenant_id, "reconciliation.alert_resolved", datetime.now(UTC),
                        data, alert.customer, key=f"alert:{alert.id}:resolved")  # fmt: skip


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v
            for k, v in data.items()}  # fmt: skip


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


def _resolved_same(conn: Any, tenant_id: int, d: Discrepancy) -> bool:
    row = conn.execute(
        "SELECT 1 FROM reconciliation_alerts WHERE tenant_id = %s AND kind = %s AND customer = %s "
        "AND meter = %s AND window_start = %s AND status = 'resolved' AND difference = %s LIMIT 1",
        (tenant_id, d.kind, d.customer, d.meter, d.window_start, d.difference),
    ).fetchone()
    return row is not None
