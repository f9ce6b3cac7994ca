"""Hot and periodic statements on tables that grow without bound find their rows by index.

The tables are filled with `generate_series` (tens of thousands of rows: where the planner
turned from probing to hashing a whole table, bench/HISTORY.md 2026-12-06), analyzed, and each
statement, taken from its module, is EXPLAINed with representative parameters and batches of
1, 100 and 1,000. A sequential scan of an unbounded table, or an index read without a
condition, fails the test: such a statement costs more every day the table grows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from aggregator.postgres import ledger
from meterline.entitlements.postgres import answers
from meterline.notify.postgres import deliveries
from meterline.usage import postgres as usage
from meterline.view.postgres import rebuild, verify
from reporter.postgres import lag, rollups
from reporter.postgres import ledger as report_ledger

UNBOUNDED = (
    "usage_event_ids",
    "usage_events",
    "usage_rollups_minute",
    "entitlement_answers",
    "report_ledger",
    "webhook_messages",
    "webhook_deliveries",
    "entitlement_notices",
    "revenue_events",
)
ROWS = 30_000
CUSTOMERS = 200
ENDPOINTS = 20
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
BATCHES = (1, 100, 1_000)

Conn = psycopg.Connection[Any]
Params = Callable[[int], Any]


def fill(conn: Conn) -> None:
    """Every unbounded table the statements read, `ROWS` rows each, over `CUSTOMERS`
    customers and some 40 days, analyzed."""
    conn.execute(b"INSERT INTO tenants (name) VALUES ('acme'), ('globex')")
    conn.execute(
        b"INSERT INTO usage_event_ids (tenant_id, event_id, day) "
        b"SELECT 1, 'e' || g, DATE '2026-12-06' - (g %% 40) FROM generate_series(1, %s) g",
        (ROWS,),
    )
    conn.execute(
        b"INSERT INTO entitlement_answers (tenant_id, event_id, status, body, created_at, "
        b"customer, meter, amount, event_ms, claimed_at) "
        b"SELECT 1, 'e' || g, 200, '{}', %(now)s - g * interval '1 minute', 'c' || (g %% %(c)s), "
        b"'api_calls', 1, %(ms)s - g::bigint * 60000, %(now)s - g * interval '1 minute' "
        b"FROM generate_series(1, %(n)s) g",
        {"now": NOW, "ms": NOW_MS, "c": CUSTOMERS, "n": ROWS},
    )
    conn.execute(
        b"INSERT INTO usage_rollups_minute "
        b"(tenant_id, customer, meter, bucket, value, count, latest_ts) "
        b"SELECT 1, 'c' || (g %% %(c)s), 'api_calls', "
        b"date_trunc('minute', %(now)s - g * interval '1 minute'), 1, 1, %(now)s "
        b"FROM generate_series(1, %(n)s) g",
        {"now": NOW, "c": CUSTOMERS, "n": ROWS},
    )
    conn.execute(
        b"INSERT INTO report_ledger (tenant_id, customer, meter, slot_start, revision, "
        b"identifier, event_name, stripe_customer_id, value, total, status) "
        b"SELECT 1, 'c' || (g %% %(c)s), 'api_calls', date_trunc('hour', %(now)s) "
        b"- (g / %(c)s) * interval '1 hour', 1, 'r' || g, 'api_calls', 'cus', 1, 1, "
        b"CASE WHEN g <= %(c)s THEN 'pending' ELSE 'sent' END "
        b"FROM generate_series(1, %(n)s) g",
        {"now": NOW, "c": CUSTOMERS, "n": ROWS},
    )
    fill_webhooks(conn)
    conn.execute(b"ANALYZE")


def fill_webhooks(conn: Conn) -> None:
    """`ENDPOINTS` endpoints; `ROWS` messages, each delivered to one endpoint but the last 100."""
    conn.execute(
        b"INSERT INTO webhook_endpoints (tenant_id, url) "
        b"SELECT 1, 'https://h' || g || '.test' FROM generate_series(1, %s) g",
        (ENDPOINTS,),
    )
    conn.execute(
        b"INSERT INTO webhook_messages (msg_id, tenant_id, event_type, ordering_key, body) "
        b"SELECT 'm' || g, 1, 'usage.threshold', 'c' || (g %% %s), '' "
        b"FROM generate_series(1, %s) g",
        (CUSTOMERS, ROWS),
    )
    conn.execute(
        b"INSERT INTO webhook_deliveries (message_id, endpoint_id, ordering_key, status) "
        b"SELECT id, 1 + id %% %s, ordering_key, "
        b"CASE WHEN id > %s THEN 'pending' ELSE 'succeeded' END FROM webhook_messages",
        (ENDPOINTS, ROWS - 100),
    )
    conn.execute(b"INSERT INTO webhook_endpoints (tenant_id, url) VALUES (1, 'https://few.test')")
    conn.execute(
        b"INSERT INTO webhook_deliveries (message_id, endpoint_id, ordering_key, status) "
        b"SELECT id, %s, ordering_key, 'succeeded' FROM webhook_messages WHERE id <= 5",
        (ENDPOINTS + 1,),
    )


def claims(n: int) -> str:
    rows = [
        {"tenant_id": 1, "event_id": f"x{i}", "customer": "c1", "meter": "api_calls"}
        | {"amount": 1, "event_ms": NOW_MS}
        for i in range(n)
    ]
    return json.dumps(rows)


def decisions(n: int) -> str:
    rows = [
        {"tenant_id": 1, "event_id": f"e{i + 1}", "status": 200, "body": {}, "published": True}
        for i in range(n)
    ]
    return json.dumps(rows)


def ids(n: int) -> list[Any]:
    return [[1] * n, [f"e{i + 1}" for i in range(n)]]


DAY = 86_400_000
MONTH_START = datetime(2026, 12, 1, tzinfo=UTC)
SLOT = {"tenant": 1, "since": NOW - timedelta(hours=2), "until": NOW}
SERIES = {"tenant": 1, "meter": "api_calls", "lo": NOW - timedelta(days=1), "hi": NOW}

STATEMENTS: dict[str, tuple[str, Params]] = {
    "answers.claim_many": (answers._CLAIM_MANY, lambda n: (claims(n),)),
    "answers.decide_many": (answers._DECIDE_MANY, lambda n: (decisions(n),)),
    "answers.abandon_many": (answers._ABANDON_MANY, lambda n: (decisions(n),)),
    "answers.claim": (
        answers._CLAIM,
        lambda n: (
            {"t": 1, "e": "x", "customer": "c1", "meter": "api_calls"} | {"amount": 1, "ms": NOW_MS}
        ),
    ),
    "answers.pending": (
        answers._PENDING,
        lambda n: (1, "c1", "api_calls", int(MONTH_START.timestamp() * 1000), NOW_MS),
    ),
    "rebuild.counted": (rebuild._COUNTED, ids),
    "rebuild.granted": (rebuild._GRANTED, lambda n: {"since": NOW_MS - DAY}),
    "reporter.slots": (rollups._SLOTS.format(extra=""), lambda n: SLOT),
    "reporter.slots_of_one": (
        rollups._SLOTS.format(extra=" AND r.customer = %(customer)s"),
        lambda n: SLOT | {"customer": "c1"},
    ),
    "reporter.last_values": (
        rollups._LAST_VALUES,
        lambda n: (
            {"tenant": 1, "customer": "c1", "meter": "api_calls"}
            | {"at": NOW, "since": NOW - timedelta(days=30), "end": NOW}
        ),
    ),
    "reporter.reported": (
        report_ledger.REPORTED,
        lambda n: (1, NOW - timedelta(hours=2), NOW),
    ),
    "reporter.live_hours": (
        report_ledger.LIVE_HOURS,
        lambda n: (
            [f"c{i % CUSTOMERS}" for i in range(n)],
            [NOW - timedelta(hours=1 + i // CUSTOMERS) for i in range(n)],
            1,
        ),
    ),
    "reporter.settle": (
        report_ledger.SETTLE,
        lambda n: (NOW, [f"r{i + 1}" for i in range(n)], ["sent"] * n, [None] * n),
    ),
    "reporter.lag_probe": (
        lag._OPEN,
        lambda n: (
            {"meter": "mtr", "customer": "cus", "hour": NOW - timedelta(hours=1)}
            | {"now": NOW, "tenant": 1, "c": "c1", "m": "api_calls", "end": NOW, "ident": "r1"}
        ),
    ),
    "webhooks.claim": (deliveries._CLAIM, lambda n: None),
    "webhooks.deliveries": (deliveries._DELIVERIES, lambda n: (1, None, None, 50)),
    "webhooks.deliveries_few": (
        deliveries._DELIVERIES,
        lambda n: (ENDPOINTS + 1, None, None, 50),
    ),
    "usage.series": (
        usage._SERIES.format(customer="", fold="SUM(s)"),
        lambda n: SERIES | {"step": timedelta(hours=1)},
    ),
    "usage.total": (usage._TOTAL.format(customer="", fold="SUM(s)"), lambda n: SERIES),
    "verify.fold": (
        verify._FOLD,
        lambda n: (1, "c1", "api_calls", NOW_MS - DAY, NOW_MS),
    ),
}


def whole_reads(plan: dict[str, Any], partial: set[str], limited: bool = False) -> Iterator[str]:
    """Each node of `plan` that reads an unbounded table whole: a sequential scan, or an index
    read without a condition, unless the index is `partial` (its predicate bounds it) or a
    Limit above it stops it (an ordered read of the newest rows)."""
    relation = plan.get("Relation Name")
    node = plan["Node Type"]
    if relation in UNBOUNDED:
        bounded = "Index Cond" in plan or plan.get("Index Name") in partial or limited
        if node == "Seq Scan" or (node in ("Index Scan", "Index Only Scan") and not bounded):
            yield f"{node} on {relation}"
    for child in plan.get("Plans", ()):
        yield from whole_reads(child, partial, limited or node == "Limit")


def partial_indexes(conn: Conn) -> set[str]:
    rows = conn.execute(b"SELECT indexname FROM pg_indexes WHERE indexdef LIKE '% WHERE %'")
    return {str(r[0]) for r in rows}


def plan_of(conn: Conn, statement: str, params: Any) -> dict[str, Any]:
    explain = f"EXPLAIN (FORMAT JSON) {statement}".encode()
    row = conn.execute(explain, params).fetchone()
    assert row is not None
    doc = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return dict(doc[0]["Plan"])


def aggregator_plans(conn: Conn, n: int) -> dict[str, dict[str, Any]]:
    """The aggregator's ledger and rollup writes, with a batch of `n` events in its temporary
    tables as the writer leaves them."""
    for setup in ledger._SETUP.split(";"):
        if setup.strip():
            conn.execute(setup.encode())
    conn.execute(
        b"INSERT INTO batch_events SELECT 1, 'e' || g, 20428, 'c1', 'api_calls', %s, 1, %s "
        b"FROM generate_series(1, %s) g",
        (NOW_MS, NOW_MS, n),
    )
    conn.execute(
        b"INSERT INTO batch_rollups SELECT 'a', 1, 'c' || g, 'api_calls', %s, 1, 1, %s "
        b"FROM generate_series(1, %s) g",
        (NOW_MS - NOW_MS % 60_000, NOW_MS, n),
    )
    upsert = ledger._UPSERT.format(merge=ledger._MERGE["a"])
    return {
        "aggregator.insert_new": plan_of(conn, ledger._INSERT_NEW, None),
        "aggregator.upsert": plan_of(conn, upsert, ("a",)),
    }


@pytest.fixture
def filled(pg_conninfo: str) -> Iterator[Conn]:
    with psycopg.connect(pg_conninfo) as conn:
        fill(conn)
        conn.commit()
        yield conn
        conn.rollback()


def test_hot_statements_find_their_rows_by_index_on_large_tables(filled: Conn) -> None:
    """Every statement named in `STATEMENTS` and the aggregator's writes, at each batch size:
    no whole read of an unbounded table."""
    found: dict[str, list[str]] = {}
    partial = partial_indexes(filled)
    for n in BATCHES:
        for name, (statement, params) in STATEMENTS.items():
            found[f"{name} ({n})"] = list(
                whole_reads(plan_of(filled, statement, params(n)), partial)
            )
        for name, plan in aggregator_plans(filled, n).items():
            found[f"{name} ({n})"] = list(whole_reads(plan, partial))
        filled.rollback()
    whole = [f"{k}: {', '.join(v)}" for k, v in found.items() if v]
    assert not whole, "\n".join(whole)
