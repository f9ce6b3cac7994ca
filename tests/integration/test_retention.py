"""Retention against a real Postgres: each growing table loses what is past its horizon and
keeps what is inside it, what an open billing period or a reconciliation still due reads, and
open alerts; ledger partitions leave with their ids; a dry run deletes nothing; a second run
finds nothing more; unsafe settings are refused."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from meterline.errors import ConfigError
from meterline.postgres import retention
from meterline.postgres.partitions import PartitionManager, partition_name
from meterline.postgres.retention import Outcome, RetentionSettings, run
from meterline.settings import load_section

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
DEFAULTS = RetentionSettings()


def ago(days: float, now: datetime = NOW) -> datetime:
    return now - timedelta(days=days)


def execute(conn: psycopg.Connection[Any], statement: str, *params: Any) -> None:
    conn.execute(statement.encode(), params)


def scalar(conn: psycopg.Connection[Any], statement: str, *params: Any) -> Any:
    row = conn.execute(statement.encode(), params).fetchone()
    assert row is not None
    return row[0]


def keys(conn: psycopg.Connection[Any], table: str, column: str) -> set[Any]:
    return {r[0] for r in conn.execute(f"SELECT {column} FROM {table}".encode()).fetchall()}


def event(conn: psycopg.Connection[Any], event_id: str, at: datetime) -> None:
    PartitionManager().ensure(conn, [at.date()])
    execute(conn, "INSERT INTO usage_event_ids VALUES (1, %s, %s)", event_id, at.date())
    execute(
        conn,
        "INSERT INTO usage_events VALUES (1, %s, %s, 'c1', 'api_calls', %s, 1, %s)",
        event_id, at.date(), at, at,
    )  # fmt: skip


def tenant(conn: psycopg.Connection[Any]) -> None:
    execute(conn, "INSERT INTO tenants (name) VALUES ('acme')")
    execute(conn, "INSERT INTO customers (tenant_id, id) VALUES (1, 'c1')")
    execute(
        conn,
        "INSERT INTO api_keys VALUES ('k1', 1, '\\x00'::bytea, ARRAY['read'], now(), NULL)",
    )


def report_row(
    conn: psycopg.Connection[Any], ident: str, slot: datetime, status: str, revision: int = 1
) -> None:
    execute(
        conn,
        "INSERT INTO report_ledger (tenant_id, customer, meter, slot_start, revision, identifier, "
        "event_name, stripe_customer_id, value, total, status) "
        "VALUES (1, 'c1', 'api_calls', %s, %s, %s, 'api_calls', 'cus_1', 1, 1, %s)",
        slot, revision, ident, status,
    )  # fmt: skip


def alert(conn: psycopg.Connection[Any], status: str, window: datetime, updated: datetime) -> int:
    return int(
        scalar(
            conn,
            "INSERT INTO reconciliation_alerts (tenant_id, kind, customer, meter, window_start, "
            "window_end, our_units, sent_units, difference, status, created_at, updated_at) "
            "VALUES (1, 'not_reported', 'c1', 'api_calls', %s, %s, 1, 0, -1, %s, %s, %s) "
            "RETURNING id",
            window,
            window + timedelta(hours=1),
            status,
            updated,
            updated,
        )
    )


def reconciliation(conn: psycopg.Connection[Any], window_end: datetime, status: str = "ok") -> int:
    return int(
        scalar(
            conn,
            "INSERT INTO reconciliation_runs (tenant_id, window_start, window_end, trigger, "
            "status, started_at, finished_at) VALUES (1, %s, %s, 'scheduled', %s, %s, %s) "
            "RETURNING id",
            window_end - timedelta(days=1),
            window_end,
            status,
            window_end,
            window_end,
        )
    )


def seed(conn: psycopg.Connection[Any], now: datetime = NOW) -> None:
    """Per table, one row past its default horizon ('old...') and rows to keep."""
    tenant(conn)
    event(conn, "old-event", ago(50, now))
    event(conn, "new-event", ago(10, now))
    for feature, days in (("old-notice", 401), ("new-notice", 399)):
        execute(
            conn,
            "INSERT INTO entitlement_notices (tenant_id, customer, feature, period_start, notice) "
            "VALUES (1, 'c1', %s, %s, 'threshold:80')",
            feature,
            ago(days, now),
        )
    for ident, days in (("old-answer", 41), ("new-answer", 39)):
        execute(
            conn,
            "INSERT INTO entitlement_answers VALUES (1, %s, 200, '{}', %s)",
            ident,
            ago(days, now),
        )
    for ident, days in (("old-hook", 31), ("new-hook", 29)):
        execute(
            conn,
            "INSERT INTO stripe_webhook_events (event_id, type, created, received_at) "
            "VALUES (%s, 'customer.subscription.updated', 1, %s)",
            ident, ago(days, now),
        )  # fmt: skip
    for ident, days in (("old-reject", 91), ("new-reject", 89)):
        execute(
            conn,
            "INSERT INTO stripe_webhook_rejects (body_sha256, event_id, size, body, reason, "
            "first_seen, last_seen) VALUES (sha256(%s::bytea), %s, 1, 'x', 'bad', %s, %s)",
            ident.encode(), ident, ago(days + 1, now), ago(days, now),
        )  # fmt: skip
    for ident, days in ((b"old-session", 8), (b"new-session", 6)):
        execute(
            conn,
            "INSERT INTO finance_sessions (id_hash, tenant_id, key_id, created_at, expires_at, "
            "last_seen_at) VALUES (sha256(%s), 1, 'k1', %s, %s, %s)",
            ident, ago(days + 1, now), ago(days, now), ago(days + 1, now),
        )  # fmt: skip
    report_row(conn, "old-sent", ago(401, now), "sent")
    report_row(conn, "old-pending", ago(402, now), "pending")
    report_row(conn, "old-in-open-alert", ago(500, now), "sent")
    report_row(conn, "new-sent", ago(399, now), "sent")
    for at in (ago(500, now), ago(450, now), ago(10, now)):
        execute(conn, "INSERT INTO report_boundaries VALUES (1, 'c1', %s)", at)
        execute(
            conn,
            "INSERT INTO report_contexts (tenant_id, customer, since, plan, stripe_customer_id, "
            "meters) VALUES (1, 'c1', %s, 'basic', 'cus_1', '{}')",
            at,
        )
    for days in (31, 29):
        execute(
            conn,
            "INSERT INTO report_lag_probes (stripe_meter_id, stripe_customer_id, hour, expected, "
            "sent_at) VALUES ('mtr', 'cus_1', %s, 1, %s)",
            ago(days, now), ago(days, now),
        )  # fmt: skip
    old_run = reconciliation(conn, ago(420, now))
    kept_run = reconciliation(conn, ago(430, now))
    alert(conn, "open", ago(500, now), ago(500, now))
    execute(conn, "UPDATE reconciliation_alerts SET run_id = %s", kept_run)
    resolved = alert(conn, "resolved", ago(410, now), ago(401, now))
    execute(
        conn,
        "INSERT INTO reconciliation_repairs (alert_id, action, outcome) VALUES (%s, 'push', 'ok')",
        resolved,
    )
    alert(conn, "resolved", ago(405, now), ago(399, now))
    reconciliation(conn, ago(1, now))
    assert old_run < kept_run
    webhooks(conn, now)


def webhooks(conn: psycopg.Connection[Any], now: datetime) -> None:
    """Messages of 31 days: one settled ('old-sent', goes with its delivery and attempt), one
    still pending ('old-pending', kept); one of 29 days ('new-sent', kept)."""
    endpoint = scalar(
        conn, "INSERT INTO webhook_endpoints (tenant_id, url) VALUES (1, 'https://x') RETURNING id"
    )
    for msg_id, days, status in (("old-sent", 31, "succeeded"), ("old-pending", 31, "pending"),
                                 ("new-sent", 29, "succeeded")):  # fmt: skip
        message = scalar(
            conn,
            "INSERT INTO webhook_messages (msg_id, tenant_id, event_type, ordering_key, body, "
            "created_at) VALUES (%s, 1, 'subscription.changed', 'c1', '{}', %s) RETURNING id",
            msg_id, ago(days, now),
        )  # fmt: skip
        delivery = scalar(
            conn,
            "INSERT INTO webhook_deliveries (message_id, endpoint_id, ordering_key, status) "
            "VALUES (%s, %s, 'c1', %s) RETURNING id",
            message, endpoint, status,
        )  # fmt: skip
        execute(
            conn,
            "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, latency_ms, "
            "succeeded) VALUES (%s, 1, %s, 5, true)",
            delivery, ago(days, now),
        )  # fmt: skip


@pytest.fixture
def conn(pg_conninfo: str) -> Any:
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        yield c


def by_table(outcomes: list[Outcome]) -> dict[str, int]:
    return {o.table: o.rows for o in outcomes}


EXPECTED = {
    "usage_events": 1,
    "entitlement_answers": 1,
    "stripe_webhook_events": 1,
    "stripe_webhook_rejects": 1,
    "finance_sessions": 1,
    "report_ledger": 1,
    "report_boundaries": 1,
    "report_contexts": 1,
    "report_lag_probes": 1,
    "entitlement_notices": 1,
    "reconciliation_alerts": 1,
    "reconciliation_runs": 1,
    "webhook_messages": 1,
}


def test_each_table_loses_rows_past_retention_and_keeps_the_rest(conn: Any) -> None:
    seed(conn)
    assert by_table(run(conn, DEFAULTS, NOW)) == EXPECTED
    assert keys(conn, "usage_event_ids", "event_id") == {"new-event"}
    assert keys(conn, "usage_events", "event_id") == {"new-event"}
    assert keys(conn, "entitlement_answers", "event_id") == {"new-answer"}
    assert keys(conn, "entitlement_notices", "feature") == {"new-notice"}
    assert keys(conn, "stripe_webhook_events", "event_id") == {"new-hook"}
    assert keys(conn, "stripe_webhook_rejects", "event_id") == {"new-reject"}
    assert keys(conn, "finance_sessions", "last_seen_at") == {ago(7)}
    assert keys(conn, "webhook_messages", "msg_id") == {"old-pending", "new-sent"}
    assert int(scalar(conn, "SELECT count(*) FROM webhook_attempts")) == 2
    assert keys(conn, "report_ledger", "identifier") == {
        "old-pending",
        "old-in-open-alert",
        "new-sent",
    }
    assert keys(conn, "report_boundaries", "at") == {ago(450), ago(10)}
    assert keys(conn, "report_contexts", "since") == {ago(450), ago(10)}  # the one in force stays
    assert keys(conn, "report_lag_probes", "sent_at") == {ago(29)}
    assert keys(conn, "reconciliation_alerts", "status") == {"open", "resolved"}
    assert keys(conn, "reconciliation_alerts", "updated_at") == {ago(500), ago(399)}
    assert scalar(conn, "SELECT count(*) FROM reconciliation_repairs") == 0
    assert keys(conn, "reconciliation_runs", "window_end") == {ago(430), ago(1)}


def test_ledger_partitions_leave_with_their_ids(conn: Any) -> None:
    seed(conn)
    outcomes = run(conn, DEFAULTS, NOW)
    assert outcomes[0].partitions == (partition_name(ago(50).date()),)
    partitions = keys(conn, "pg_tables", "tablename")
    assert partition_name(ago(50).date()) not in partitions
    assert partition_name(ago(10).date()) in partitions
    assert scalar(conn, "SELECT count(*) FROM usage_event_ids WHERE day < %s", ago(40)) == 0


def test_dry_run_counts_what_a_run_deletes_and_deletes_nothing(conn: Any) -> None:
    seed(conn)
    freed = reconciliation(conn, ago(440))
    execute(
        conn,
        "UPDATE reconciliation_alerts SET run_id = %s "
        "WHERE status = 'resolved' AND updated_at < %s",
        freed, ago(400),
    )  # fmt: skip
    before = table_sizes(conn)
    dry = run(conn, DEFAULTS, NOW, dry_run=True)
    assert table_sizes(conn) == before
    assert [(o.table, o.rows, o.partitions) for o in dry] == [
        (o.table, o.rows, o.partitions) for o in run(conn, DEFAULTS, NOW)
    ]


def test_a_second_run_deletes_nothing_more(conn: Any) -> None:
    seed(conn)
    run(conn, DEFAULTS, NOW)
    after = table_sizes(conn)
    again = run(conn, DEFAULTS, NOW)
    assert all(o.rows == 0 and not o.partitions for o in again)
    assert table_sizes(conn) == after


def test_small_batches_delete_everything_past_retention(conn: Any) -> None:
    tenant(conn)
    for i in range(250):
        execute(
            conn, "INSERT INTO entitlement_answers VALUES (1, %s, 200, '{}', %s)", f"e{i}", ago(60)
        )
    settings = RetentionSettings(batch=100)
    assert by_table(run(conn, settings, NOW))["entitlement_answers"] == 250
    assert scalar(conn, "SELECT count(*) FROM entitlement_answers") == 0


def test_an_open_billing_period_keeps_its_ledger_days_and_report_rows(conn: Any) -> None:
    seed(conn)
    execute(
        conn,
        "INSERT INTO subscriptions (tenant_id, customer, source, plan, status, "
        "current_period_start, current_period_end) "
        "VALUES (1, 'c1', 'manual', 'yearly', 'active', %s, %s)",
        ago(300), ago(-65),
    )  # fmt: skip
    report_row(conn, "in-open-period", ago(200), "sent")
    report_row(conn, "before-open-period", ago(301), "sent")
    settings = RetentionSettings(report_days=36, alerts_days=36)
    outcomes = {o.table: o for o in run(conn, settings, NOW)}
    assert outcomes["usage_events"].partitions == ()
    assert keys(conn, "usage_event_ids", "event_id") == {"old-event", "new-event"}
    assert "in-open-period" in keys(conn, "report_ledger", "identifier")
    assert "before-open-period" not in keys(conn, "report_ledger", "identifier")
    assert ago(10) in keys(conn, "report_boundaries", "at")


def test_a_reconciliation_still_due_keeps_what_it_reads(conn: Any) -> None:
    seed(conn)
    event(conn, "older-event", ago(70))
    execute(
        conn,
        "INSERT INTO subscriptions (tenant_id, customer, source, plan, status, "
        "stripe_subscription_id, current_period_start, current_period_end) "
        "VALUES (1, 'c1', 'stripe', 'basic', 'canceled', 'sub_1', %s, %s)",
        ago(90), ago(60),
    )  # fmt: skip
    execute(conn, "DELETE FROM reconciliation_runs WHERE window_end > %s", ago(60))
    reconciliation(conn, ago(60))
    run(conn, DEFAULTS, NOW)
    assert keys(conn, "usage_event_ids", "event_id") == {"old-event", "new-event"}


def test_a_billed_tenant_never_reconciled_keeps_its_whole_ledger(conn: Any) -> None:
    seed(conn)
    execute(
        conn,
        "INSERT INTO subscriptions (tenant_id, customer, source, plan, status, "
        "stripe_subscription_id, current_period_start, current_period_end) "
        "VALUES (1, 'c1', 'stripe', 'basic', 'canceled', 'sub_1', %s, %s)",
        ago(90), ago(60),
    )  # fmt: skip
    execute(conn, "UPDATE reconciliation_runs SET status = 'failed'")
    outcomes = {o.table: o for o in run(conn, DEFAULTS, NOW)}
    assert outcomes["usage_events"].partitions == ()
    assert outcomes["report_ledger"].rows == 0


@pytest.mark.parametrize(
    ("field", "value", "minimum"),
    [
        ("ledger_days", 35, 36),
        ("answers_days", 20, 36),
        ("report_days", 30, 36),
        ("alerts_days", 1, 36),
        ("webhook_events_days", 3, 4),
        ("batch", 10, 100),
    ],
)
def test_settings_below_the_safe_minimum_are_refused(field: str, value: int, minimum: int) -> None:
    with pytest.raises(ValidationError, match=f"{field} must be >= {minimum}"):
        RetentionSettings.model_validate({field: value})
    env = {f"METERLINE_RETENTION_{field.upper()}": str(value)}
    with pytest.raises(ConfigError, match=f"{field} must be >= {minimum}"):
        load_section(RetentionSettings, env)


def test_a_longer_lateness_window_raises_the_minimums() -> None:
    with pytest.raises(ValidationError, match="ledger_days must be >= 61"):
        RetentionSettings(lateness_days=60)


def test_the_command_prints_each_table_and_dry_run_deletes_nothing(
    conn: Any, pg_conninfo: str
) -> None:
    now = datetime.now(UTC)
    seed(conn, now)
    before = table_sizes(conn)
    dry = meterline("retention", "run", "--dry-run", url=pg_conninfo)
    assert dry.returncode == 0, dry.stderr
    assert table_sizes(conn) == before
    lines = dry.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == list(EXPECTED)
    assert all(" would delete 1 rows before " in line for line in lines)
    done = meterline("retention", "run", url=pg_conninfo)
    assert done.returncode == 0, done.stderr
    assert all(" deleted 1 rows before " in line for line in done.stdout.splitlines())
    assert "(1 partitions: usage_events_" in done.stdout


def test_the_command_refuses_unsafe_settings_with_a_clear_error(pg_conninfo: str) -> None:
    result = meterline("retention", "run", url=pg_conninfo, METERLINE_RETENTION_LEDGER_DAYS="7")
    assert result.returncode == 1
    assert "ledger_days must be >= 36 (the lateness window + 1 day), got 7" in result.stderr


def meterline(*args: str, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "METERLINE_HOME": "/nonexistent",
        "METERLINE_DATABASE_URL": url,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "meterline_ops.main", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def table_sizes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    tables = [*EXPECTED, "usage_event_ids", "reconciliation_repairs", "usage_rollups_minute"]
    return {t: int(scalar(conn, f"SELECT count(*) FROM {t}")) for t in tables}


def test_the_last_finished_reconciliation_of_a_tenant_is_kept(conn: Any) -> None:
    seed(conn)
    execute(conn, "DELETE FROM reconciliation_runs WHERE window_end > %s", ago(60))
    reconciliation(conn, ago(410), status="failed")
    run(conn, DEFAULTS, NOW)
    assert keys(conn, "reconciliation_runs", "window_end") == {ago(420), ago(430)}


def test_a_locked_partition_stops_the_run_and_the_next_run_drops_it(
    conn: Any, pg_conninfo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(conn)
    monkeypatch.setattr(retention, "LOCK_TIMEOUT", "200ms")
    old = partition_name(ago(50).date())
    with psycopg.connect(pg_conninfo) as other:
        other.execute(f"LOCK TABLE {old} IN ACCESS SHARE MODE".encode())
        with pytest.raises(retention.RetentionBusy, match="locked by another session"):
            run(conn, DEFAULTS, NOW)
    assert old in keys(conn, "pg_tables", "tablename")
    assert run(conn, DEFAULTS, NOW)[0].partitions == (old,)
    assert keys(conn, "usage_event_ids", "event_id") == {"new-event"}


def test_a_run_refuses_a_connection_outside_autocommit(pg_conninfo: str) -> None:
    with psycopg.connect(pg_conninfo) as c, pytest.raises(ValueError, match="autocommit"):
        run(c, DEFAULTS, NOW)


@pytest.mark.parametrize("seed_value", range(6))
def test_random_histories_keep_exactly_what_an_independent_oracle_keeps(
    conn: Any, seed_value: int
) -> None:
    """Random ledger days, report rows, alerts, periods and reconciliations; the oracle below
    decides what stays from the rules as written in the README, sharing no code with them."""
    rng = random.Random(seed_value)
    settings = RetentionSettings(
        ledger_days=rng.randint(36, 120),
        report_days=rng.randint(36, 500),
        alerts_days=rng.randint(36, 500),
    )
    tenant(conn)
    execute(conn, "INSERT INTO customers (tenant_id, id) VALUES (1, 'c2')")
    floors: list[datetime] = []
    if rng.random() < 0.5:
        start = ago(rng.randint(1, 400))
        floors.append(start)
        subscription(conn, "c1", None, start, ago(-rng.randint(1, 30)))
    if rng.random() < 0.5:
        subscription(conn, "c2", "sub_2", ago(90), ago(60))
        ends = []
        for _ in range(rng.randint(0, 3)):
            end, status = ago(rng.randint(1, 300)), rng.choice(["ok", "alerts", "failed"])
            reconciliation(conn, end, status)
            ends += [end] if status != "failed" else []
        floors.append(max(ends, default=datetime(1970, 1, 1, tzinfo=UTC)))
    floor = min(floors, default=None)
    events = {f"e{i}": ago(rng.uniform(0, 150)) for i in range(40)}
    for ident, at in events.items():
        event(conn, ident, at)
    alerts = []
    for _ in range(rng.randint(0, 6)):
        status = rng.choice(["open", "acknowledged", "resolved"])
        window = ago(rng.randint(0, 800)).replace(minute=0)
        updated = ago(rng.randint(0, 800))
        alerts.append((alert(conn, status, window, updated), status, window, updated))
    reports = {}
    for i in range(60):
        near_alert = [a[2] + timedelta(hours=rng.choice([-1, 0, 1])) for a in alerts]
        slot = rng.choice(near_alert or [NOW]) if rng.random() < 0.3 else None
        slot = slot or ago(rng.randint(0, 800)).replace(minute=0)
        status = rng.choice(["pending", "sent", "sent", "rejected", "canceled"])
        report_row(conn, f"r{i}", slot, status, revision=i + 1)
        reports[f"r{i}"] = (slot, status)

    run(conn, settings, NOW)

    def cutoff(days: int) -> datetime:
        return min(ago(days), floor) if floor is not None else ago(days)

    ledger_day = cutoff(settings.ledger_days).date()
    assert keys(conn, "usage_event_ids", "event_id") == {
        i for i, at in events.items() if at.date() >= ledger_day
    }
    live_windows = [(w, w + timedelta(hours=1)) for _, s, w, _ in alerts if s != "resolved"]
    assert keys(conn, "report_ledger", "identifier") == {
        i
        for i, (slot, status) in reports.items()
        if status == "pending"
        or slot >= cutoff(settings.report_days)
        or any(lo <= slot < hi for lo, hi in live_windows)
    }
    assert keys(conn, "reconciliation_alerts", "id") == {
        i for i, s, _, updated in alerts if s != "resolved" or updated >= ago(settings.alerts_days)
    }


def subscription(
    conn: psycopg.Connection[Any],
    customer: str,
    stripe_id: str | None,
    start: datetime,
    end: datetime,
) -> None:
    execute(
        conn,
        "INSERT INTO subscriptions (tenant_id, customer, source, plan, status, "
        "stripe_subscription_id, current_period_start, current_period_end) "
        "VALUES (1, %s, %s, 'basic', 'active', %s, %s, %s)",
        *(customer, "stripe" if stripe_id else "manual", stripe_id, start, end),
    )


@pytest.mark.parametrize("rule", retention.RULES, ids=lambda r: r.table)
def test_each_rule_finds_its_rows_through_an_index(conn: Any, rule: retention.RowRule) -> None:
    """Retention runs on tables that grow without bound: a rule that scans its whole table
    every night gets slower every night. With sequential scans priced out, the planner still
    picks one when no index serves the rule's condition."""
    seed(conn)
    execute(conn, f"ANALYZE {rule.table}")
    conn.execute(b"SET enable_seqscan = off")
    try:
        params = {"cutoff": ago(30), "alerts_cutoff": ago(30), "batch": 100}
        statement = f"EXPLAIN SELECT t.ctid FROM {rule.table} t WHERE {rule.where} LIMIT 100"
        plan = "\n".join(r[0] for r in conn.execute(statement.encode(), params).fetchall())
    finally:
        conn.execute(b"RESET enable_seqscan")
    assert f"Seq Scan on {rule.table} t" not in plan, plan
