"""Exactly-once on the real broker, Postgres and Redis, with duplicates and a poison message."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import redis
from psycopg_pool import ConnectionPool

from meterline.clock import SystemClock
from meterline.kafka.dlq import DeadLetter, DeadLetterPublisher, read_dead_letters
from meterline.view.postgres.rebuild import stored_offsets
from meterline.view.postgres.verify import verify
from tests.aggregator.support import (
    Aggregator,
    aggregation_of,
    consumed,
    ledger_count,
    make_stream,
    publish,
    redis_view,
    rollups,
    running,
    setup_tenant,
    wait_for,
)
from tests.fixtures.services import Topics

pytestmark = pytest.mark.integration


def assert_exact(pool: ConnectionPool, redis_url: str, tenant: int, stream_expected: dict) -> None:  # type: ignore[type-arg]
    view = redis_view(redis_url)
    wait_for(lambda: view.watermarks() == stored_offsets(pool), 60, "the view to catch up")
    assert rollups(pool, tenant) == stream_expected
    mismatches = verify(view, pool, aggregation_of, SystemClock().now_ms())
    assert mismatches == [], [str(m) for m in mismatches[:10]]


def test_duplicates_and_poison(
    pool: ConnectionPool,
    service_env: dict[str, str],
    kafka_topics: Topics,
    redis_url: str,
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    stream = make_stream(tenant, 20_000)
    boot = service_env["METERLINE_KAFKA_BOOTSTRAP"]
    publish(boot, kafka_topics.usage, stream.events[:10_000])
    poison = DeadLetter(b"1/cust00", b"{not json", "", kafka_topics.usage, -1, -1)
    dlq = DeadLetterPublisher(boot, kafka_topics.dlq)
    dlq.republish(kafka_topics.usage, [poison])
    publish(boot, kafka_topics.usage, stream.events[10_000:])
    total = len(stream.events) + 1
    with running(Aggregator(service_env, tmp_path / "agg.log")) as (agg,):
        wait_for(lambda: consumed(pool) == total, 120, "every message to be consumed")
        assert_exact(pool, redis_url, tenant, stream.expected)
        assert ledger_count(pool) == stream.unique
        metrics = agg.get("/metrics").text
        assert "meterline_aggregator_dead_letters_total 1.0" in metrics
        assert agg.get("/readyz").status_code == 200
    letters = list(read_dead_letters(boot, kafka_topics.dlq))
    assert [(x.value, x.reason.startswith("not JSON")) for x in letters] == [(b"{not json", True)]
    check_cli(service_env, redis_url, stream.expected)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterline_ops.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def check_cli(env: dict[str, str], redis_url: str, expected: dict) -> None:  # type: ignore[type-arg]
    customer = "cust03"
    want = sum(v for (c, m, _), (v, _) in expected.items() if c == customer and m == "calls")
    now = SystemClock().now()
    span = ["--from", (now - timedelta(hours=3)).isoformat(), "--to", now.isoformat()]
    q = cli(
        env,
        "usage",
        "query",
        "--tenant",
        "acme",
        "--meter",
        "calls",
        "--customer",
        customer,
        "--window",
        "hour",
        "--json",
        *span,
    )
    assert q.returncode == 0, q.stderr
    doc = orjson.loads(q.stdout)
    assert doc["customer"] == customer and doc["total"] == want
    assert sum(p["value"] for p in doc["series"]) == want
    assert cli(env, "redis", "verify", "--tenant", "acme").returncode == 0
    client = redis.Redis.from_url(redis_url)
    key = next(client.scan_iter(match="ml:v:*:calls:M*"))
    client.hincrbyfloat(key, "T", 5)
    bad = cli(env, "redis", "verify")
    assert bad.returncode == 1 and "mismatch" in bad.stdout
    assert cli(env, "redis", "rebuild").returncode == 0
    assert cli(env, "redis", "verify").returncode == 0
    listed = cli(env, "dlq", "list", "--json")
    assert listed.returncode == 0 and "not JSON" in listed.stdout
