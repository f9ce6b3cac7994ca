"""Crashes (SIGKILL at three points), a Redis flush, and a rebalance: still exactly once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis
from psycopg_pool import ConnectionPool

from tests.aggregator.support import (
    Aggregator,
    consumed,
    ledger_count,
    make_stream,
    publish,
    running,
    setup_tenant,
    wait_for,
)
from tests.aggregator.test_exactly_once import assert_exact
from tests.fixtures.services import Topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CRASH_EVENTS = 200_000  # the size: six SIGKILLs during a 200,000-event run


def test_sigkill_at_three_points(
    pool: ConnectionPool,
    service_env: dict[str, str],
    kafka_topics: Topics,
    redis_url: str,
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    stream = make_stream(tenant, CRASH_EVENTS, seed=11)
    boot = service_env["METERLINE_KAFKA_BOOTSTRAP"]
    producer = threading.Thread(target=publish, args=(boot, kafka_topics.usage, stream.events))
    producer.start()
    kills = []
    for point in ["inside_txn", "after_commit", "between_batches"] * 2:
        agg = Aggregator(
            service_env,
            tmp_path / "agg.log",
            METERLINE_AGGREGATOR_CRASH_AT=f"{point}:0.25",
            METERLINE_AGGREGATOR_BATCH_SIZE="500",  # ~120 batches: six crashes never run dry
        )
        agg.start()
        before = consumed(pool)
        wait_for(lambda a=agg: not a.proc.alive(), 90, f"a crash at {point}")  # type: ignore[misc]
        kills.append((point, before, consumed(pool)))
    producer.join()
    assert len(kills) == 6
    total = len(stream.events)
    with running(Aggregator(service_env, tmp_path / "agg.log")):
        wait_for(lambda: consumed(pool) == total, 150, "every message to be consumed")
        assert_exact(pool, redis_url, tenant, stream.expected)
    assert ledger_count(pool) == stream.unique


def test_redis_flushed_mid_run(
    pool: ConnectionPool,
    service_env: dict[str, str],
    kafka_topics: Topics,
    redis_url: str,
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    stream = make_stream(tenant, 30_000, seed=12)
    boot = service_env["METERLINE_KAFKA_BOOTSTRAP"]
    half = len(stream.events) // 2
    publish(boot, kafka_topics.usage, stream.events[:half])
    with running(Aggregator(service_env, tmp_path / "agg.log")) as (agg,):
        wait_for(lambda: consumed(pool) >= half // 2, 90, "some progress")
        redis.Redis.from_url(redis_url).flushall()
        publish(boot, kafka_topics.usage, stream.events[half:])
        wait_for(lambda: consumed(pool) == len(stream.events), 120, "every message")
        assert_exact(pool, redis_url, tenant, stream.expected)
        assert "meterline_aggregator_redis_rebuilds_total" in agg.get("/metrics").text


def test_two_aggregators_one_stopped_mid_run(
    pool: ConnectionPool,
    service_env: dict[str, str],
    kafka_topics: Topics,
    redis_url: str,
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    stream = make_stream(tenant, 40_000, seed=13)
    boot = service_env["METERLINE_KAFKA_BOOTSTRAP"]
    a = Aggregator(service_env, tmp_path / "a.log", METERLINE_AGGREGATOR_BATCH_SIZE="1000")
    b = Aggregator(service_env, tmp_path / "b.log", METERLINE_AGGREGATOR_BATCH_SIZE="1000")
    with running(a, b):
        publish(boot, kafka_topics.usage, stream.events[:20_000])
        wait_for(lambda: consumed(pool) >= 8_000, 90, "both to make progress")
        a.stop()
        publish(boot, kafka_topics.usage, stream.events[20_000:])
        wait_for(lambda: consumed(pool) == len(stream.events), 120, "every message")
        assert_exact(pool, redis_url, tenant, stream.expected)
    assert ledger_count(pool) == stream.unique
