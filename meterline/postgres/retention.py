"""Retention: what each growing table keeps, and the run that deletes the rest.

One plan, table by table (`RULES`): a row leaves when it is older than its table's horizon
(`RetentionSettings`), and never while billing may still read it. The billing floor
(`billing_floor`) is the earliest instant an open billing period or a reconciliation still due
reads: ledger days, report-ledger slots and period boundaries at or after it stay whatever
their age. Rows go in batches of `batch`, each `DELETE` its own short transaction, so no lock
is held for long; the ledger leaves by whole day partitions with their ids
(`partitions.drop_partitions_before`). Minute rollups are the record and are never deleted.
Why each horizon is safe: meterline/postgres/README.md, "Retention".

**The billing floor** (`billing_floor`) is never crossed by the ledger, the report ledger or
the boundaries, whatever their horizon: the earliest `current_period_start` of a period still
open (`current_period_end` after now), and for each tenant billed through Stripe (a subscription
with a Stripe id) the end of its last finished reconciliation (`ok` or `alerts`): what comes
after it is still to be reconciled. A billed tenant that never finished one holds everything.
So a yearly plan keeps a year of ledger days, and a reporter whose reconciliations fail keeps
the ledger growing until they pass (watch `MeterlineReconciliationMissed`).
Known limit: a day skipped by a failed nightly reconciliation is not held once a later night
succeeds; reconciling it by hand (`meterline reconcile run --date D`) still works for
`REPORT_DAYS` (it reads rollups and the report ledger), only the drill-down's individual events
are gone after `LEDGER_DAYS`. An alert older than `LEDGER_DAYS` likewise shows hours and report
rows but no events.

**Locks.** Rows go in batches of `BATCH` (5,000) per `DELETE`, each its own transaction
(autocommit; `run` refuses anything else). Dropping a partition takes an exclusive lock on the
ledger for an instant; `lock_timeout` (10 s) bounds the wait behind the aggregator's
transactions, and a timeout ends the run with `retention_busy` after the partition's ids went
(never the reverse): the next run drops it. Every run is idempotent; a second run finds nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from meterline.errors import MeterlineError
from meterline.events import DEFAULT_LATENESS_MS
from meterline.postgres.partitions import drop_partitions_before, partitions_before

DAY_MS = 86_400_000
STRIPE_WEBHOOK_RETRY_DAYS = 3
WEBHOOK_RETRY_DAYS = 4  # meterline.notify.schedule: 75 h 35 min, stretched by up to 20 %
EVERYTHING = datetime(1970, 1, 1, tzinfo=UTC)
LOCK_TIMEOUT = "10s"


NOTICE_PERIOD_DAYS = 366
"""The longest period a limit resets on (`reset: year`, or a yearly billing period)."""


class RetentionBusy(MeterlineError):
    """A ledger partition stayed locked by another session past `lock_timeout`: nothing was
    lost (ids go before their partition), and the next run picks it up."""

    status = 503
    code = "retention_busy"


class RetentionSettings(BaseSettings):
    """How long each growing table keeps its rows, in days (`METERLINE_RETENTION_*`).

    `lateness_days` is ingest's lateness window (`METERLINE_INGEST_LATENESS_DAYS`; set both):
    the ledger, the consume answers and the report ledger keep at least a day more, so an event
    still allowed in (or still queued in Kafka) meets its id, its answer and its slot's
    revisions. `batch` is the number of rows one `DELETE` removes.
    """

    model_config = SettingsConfigDict(
        env_prefix="METERLINE_RETENTION_", extra="ignore", frozen=True
    )

    lateness_days: int = DEFAULT_LATENESS_MS // DAY_MS
    ledger_days: int = 40
    answers_days: int = 40
    report_days: int = 400
    alerts_days: int = 400
    runs_days: int = 400
    webhook_events_days: int = 30
    webhook_rejects_days: int = 90
    sessions_days: int = 7
    lag_probes_days: int = 30
    webhook_messages_days: int = 30
    notices_days: int = 400
    batch: int = 5_000

    @model_validator(mode="after")
    def _check(self) -> RetentionSettings:
        problems = [p for p in self._problems() if p]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _problems(self) -> list[str]:
        window = self.lateness_days + 1
        return [
            _at_least("lateness_days", self.lateness_days, 1, "a day"),
            _at_least("ledger_days", self.ledger_days, window, "the lateness window + 1 day"),
            _at_least("answers_days", self.answers_days, window, "the lateness window + 1 day"),
            _at_least("report_days", self.report_days, window, "the lateness window + 1 day"),
            _at_least("alerts_days", self.alerts_days, window, "the lateness window + 1 day"),
            _at_least("runs_days", self.runs_days, 1, "a day"),
            _at_least(
                "webhook_events_days",
                self.webhook_events_days,
                STRIPE_WEBHOOK_RETRY_DAYS + 1,
                "Stripe's 3 days of redeliveries + 1 day",
            ),
            _at_least("webhook_rejects_days", self.webhook_rejects_days, 7, "a week"),
            _at_least("sessions_days", self.sessions_days, 1, "a day"),
            _at_least("lag_probes_days", self.lag_probes_days, 1, "a day"),
            _at_least(
                "notices_days",
                self.notices_days,
                NOTICE_PERIOD_DAYS + 1,
                "the longest billing period (a leap year) + 1 day, or a notice is sent again",
            ),
            _at_least(
                "webhook_messages_days",
                self.webhook_messages_days,
                WEBHOOK_RETRY_DAYS + 1,
                "the webhook retry schedule with its jitter + 1 day",
            ),
            _at_least("batch", self.batch, 100, "100 rows"),
        ]


def _at_least(name: str, value: int, minimum: int, why: str) -> str:
    if value >= minimum:
        return ""
    return f"{name} must be >= {minimum} ({why}), got {value}"


@dataclass(frozen=True, slots=True)
class RowRule:
    """Rows of `table` (alias `t`) matching `where` leave; `where` reads `%(cutoff)s`, which is
    now minus `days(settings)`, or the billing floor when `billing` and that is earlier, and
    may read `%(alerts_cutoff)s` (the alerts' own), so that a dry run counts a row that a run
    frees by deleting what the rules before it delete. `delete`, when given, replaces the plain
    batched delete (it must honour `%(batch)s`)."""

    table: str
    where: str
    days: Callable[[RetentionSettings], int]
    billing: bool = False
    delete: str | None = None


_OPEN_ALERT_WINDOW = """NOT EXISTS (
    SELECT 1 FROM reconciliation_alerts a
    WHERE a.status <> 'resolved' AND a.tenant_id = t.tenant_id AND a.customer = t.customer
      AND a.meter = t.meter AND t.slot_start >= a.window_start AND t.slot_start < a.window_end)"""
_LATEST_BOUNDARY = """t.at < %(cutoff)s AND t.at < (
    SELECT max(b.at) FROM report_boundaries b
    WHERE b.tenant_id = t.tenant_id AND b.customer = t.customer AND b.at <= %(cutoff)s)"""
_LATEST_CONTEXT = """t.since < %(cutoff)s AND t.since < (
    SELECT max(c.since) FROM report_contexts c
    WHERE c.tenant_id = t.tenant_id AND c.customer = t.customer AND c.since <= %(cutoff)s)"""
_RESOLVED_ALERT = "t.status = 'resolved' AND t.updated_at < %(cutoff)s"
_DELETE_ALERTS = f"""
WITH doomed AS (
    SELECT t.id FROM reconciliation_alerts t WHERE {_RESOLVED_ALERT} LIMIT %(batch)s
), repairs AS (
    DELETE FROM reconciliation_repairs WHERE alert_id IN (SELECT id FROM doomed)
)
DELETE FROM reconciliation_alerts WHERE id IN (SELECT id FROM doomed)"""
_OLD_RUN = """t.started_at < %(cutoff)s
    AND NOT EXISTS (
        SELECT 1 FROM reconciliation_alerts a WHERE a.run_id = t.id
        AND NOT (a.status = 'resolved' AND a.updated_at < %(alerts_cutoff)s))
    AND t.id <> ALL(ARRAY(
        SELECT DISTINCT ON (tenant_id) id FROM reconciliation_runs
        WHERE status IN ('ok', 'alerts') ORDER BY tenant_id, window_end DESC, id DESC))"""

_SETTLED_MESSAGE = """t.created_at < %(cutoff)s AND NOT EXISTS (
    SELECT 1 FROM webhook_deliveries d WHERE d.message_id = t.id AND d.status = 'pending')"""
_DELETE_MESSAGES = f"""
WITH doomed AS (
    SELECT t.id FROM webhook_messages t WHERE {_SETTLED_MESSAGE} LIMIT %(batch)s
), deliveries AS (
    DELETE FROM webhook_deliveries WHERE message_id IN (SELECT id FROM doomed)
)
DELETE FROM webhook_messages WHERE id IN (SELECT id FROM doomed)"""

RULES: tuple[RowRule, ...] = (
    RowRule("entitlement_answers", "t.created_at < %(cutoff)s", lambda s: s.answers_days),
    RowRule("stripe_webhook_events", "t.received_at < %(cutoff)s", lambda s: s.webhook_events_days),
    RowRule("stripe_webhook_rejects", "t.last_seen < %(cutoff)s", lambda s: s.webhook_rejects_days),
    RowRule("finance_sessions", "t.expires_at < %(cutoff)s", lambda s: s.sessions_days),
    RowRule(
        "report_ledger",
        f"t.slot_start < %(cutoff)s AND t.status <> 'pending' AND {_OPEN_ALERT_WINDOW}",
        lambda s: s.report_days,
        billing=True,
    ),
    RowRule("report_boundaries", _LATEST_BOUNDARY, lambda s: s.report_days, billing=True),
    RowRule("report_contexts", _LATEST_CONTEXT, lambda s: s.report_days, billing=True),
    RowRule("report_lag_probes", "t.sent_at < %(cutoff)s", lambda s: s.lag_probes_days),
    # a notice must outlive its period, or a check late in a yearly period announces it again
    RowRule("entitlement_notices", "t.period_start < %(cutoff)s", lambda s: s.notices_days),
    RowRule(
        "reconciliation_alerts", _RESOLVED_ALERT, lambda s: s.alerts_days, delete=_DELETE_ALERTS
    ),
    RowRule("reconciliation_runs", _OLD_RUN, lambda s: s.runs_days),
    # outbound webhooks: a message leaves with its deliveries and their attempt log once no
    # delivery of it is pending (a disabled endpoint's waiting deliveries keep theirs)
    RowRule(
        "webhook_messages",
        _SETTLED_MESSAGE,
        lambda s: s.webhook_messages_days,
        delete=_DELETE_MESSAGES,
    ),
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One table's result: rows deleted (or that would be), and for the ledger its partitions."""

    table: str
    cutoff: datetime
    rows: int
    partitions: tuple[str, ...] = ()


def billing_floor(conn: psycopg.Connection[Any], now: datetime) -> datetime | None:
    """The earliest instant billing still reads, or None when nothing holds data back.

    An open period (a subscription whose `current_period_end` is after `now`) reads from its
    `current_period_start`. A tenant billed through Stripe (a subscription with a Stripe id)
    still has a reconciliation due for everything after the end of its last finished run; one
    that never finished a run holds everything back (`EVERYTHING`)."""
    row = conn.execute(
        "SELECT min(current_period_start) FROM subscriptions "
        "WHERE current_period_start IS NOT NULL AND current_period_end > %s",
        (now,),
    ).fetchone()
    floors = [row[0]] if row and row[0] is not None else []
    for (upto,) in conn.execute(_RECONCILED).fetchall():
        floors.append(upto if upto is not None else EVERYTHING)
    return min(floors, default=None)


_RECONCILED = """
SELECT max(r.window_end) FROM (
    SELECT DISTINCT tenant_id FROM subscriptions WHERE stripe_subscription_id IS NOT NULL
) b LEFT JOIN reconciliation_runs r ON r.tenant_id = b.tenant_id AND r.status IN ('ok', 'alerts')
GROUP BY b.tenant_id
"""


def run(
    conn: psycopg.Connection[Any],
    settings: RetentionSettings,
    now: datetime,
    dry_run: bool = False,
) -> list[Outcome]:
    """Apply every rule on `conn` (autocommit: each batch commits alone), the ledger first.
    With `dry_run`, count what would go and delete nothing. Safe to run again at any time,
    after a failure too; a second run at the same `now` finds nothing more. Raises
    `RetentionBusy` when a ledger partition stays locked by another session for
    `LOCK_TIMEOUT`, ValueError for a connection outside autocommit (one transaction would hold
    every lock to the end), and psycopg errors for Postgres failures."""
    if not conn.autocommit:
        raise ValueError("retention.run needs an autocommit connection")
    floor = billing_floor(conn, now)
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'".encode())
    outcomes = [_ledger(conn, _cutoff(now, settings.ledger_days, floor), dry_run)]
    alerts_cutoff = _cutoff(now, settings.alerts_days, None)
    for rule in RULES:
        cutoff = _cutoff(now, rule.days(settings), floor if rule.billing else None)
        params = {"cutoff": cutoff, "alerts_cutoff": alerts_cutoff, "batch": settings.batch}
        rows = _count(conn, rule, params) if dry_run else _delete(conn, rule, params)
        outcomes.append(Outcome(rule.table, cutoff, rows))
    return outcomes


def _cutoff(now: datetime, days: int, floor: datetime | None) -> datetime:
    horizon = now - timedelta(days=days)
    return horizon if floor is None else min(horizon, floor)


def _ledger(conn: psycopg.Connection[Any], cutoff: datetime, dry_run: bool) -> Outcome:
    """Ledger partitions wholly before the cutoff's UTC day, with their ids."""
    day = cutoff.astimezone(UTC).date()
    names = partitions_before(conn, day)
    rows = sum(_partition_rows(conn, name) for name in names)
    if not dry_run:
        try:
            names = drop_partitions_before(conn, day)
        except psycopg.errors.LockNotAvailable:
            raise RetentionBusy(
                f"a ledger partition before {day} is locked by another session; run again"
            ) from None
    return Outcome("usage_events", cutoff, rows, tuple(names))


def _partition_rows(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()
    return int(row[0]) if row else 0


def _count(conn: psycopg.Connection[Any], rule: RowRule, params: dict[str, Any]) -> int:
    statement = f"SELECT count(*) FROM {rule.table} t WHERE {rule.where}"
    row = conn.execute(statement.encode(), params).fetchone()
    return int(row[0]) if row else 0


def _delete(conn: psycopg.Connection[Any], rule: RowRule, params: dict[str, Any]) -> int:
    statement = rule.delete or (
        f"DELETE FROM {rule.table} WHERE ctid = ANY(ARRAY("
        f"SELECT t.ctid FROM {rule.table} t WHERE {rule.where} LIMIT %(batch)s))"
    )
    deleted = 0
    while True:
        cur = conn.execute(statement.encode(), params)
        deleted += cur.rowcount
        if cur.rowcount < params["batch"]:
            return deleted
