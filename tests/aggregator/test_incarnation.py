"""Stored positions belong to one incarnation of the topic (issue 19). The dev stack's broker
keeps topics in memory: restarted, it starts every partition at offset 0 while Postgres still
holds the old log's positions. On a broker of the test's own, restarted as `meterline dev up`
restarts it, every event of the new log is counted, in Postgres and in the Redis view, whether
the aggregator runs through the restart or starts after it (a second `make run`); and an
aggregator restarted on the same broker carries on from its positions (Tansu reports a log end
smaller than those positions: that is no reason to stop a partition).

(A topic deleted under a live consumer is not used to make a new incarnation: on Tansu, with
librdkafka 2.16, the consumer process dies of a segmentation fault.)"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from meterline.clock import SystemClock
from meterline.kafka import ensure_topics
from meterline.view.postgres.rebuild import stored_offsets
from meterline.view.postgres.verify import verify
from meterline_devstack.broker import broker_process
from meterline_devstack.process import ManagedProcess
from tests.aggregator.support import (
    Aggregator,
    aggregation_of,
    ledger_count,
    make_stream,
    publish,
    redis_view,
    running,
    setup_tenant,
    wait_for,
)

pytestmark = pytest.mark.integration
PARTITIONS = 4


class Broker:
    """A memory-only broker of this test's own, on a fixed port."""

    def __init__(self, home: Path) -> None:
        self.proc: ManagedProcess
        self.proc, self.bootstrap = broker_process(home)
        self._port = int(self.bootstrap.rsplit(":", 1)[1])
        self._home = home

    def start(self, topic: str) -> None:
        self.proc.start(timeout=60)
        ensure_topics(self.bootstrap, [topic, f"{topic}.dlq"], partitions=PARTITIONS)

    def restart(self, topic: str) -> None:
        """SIGKILL, then start again on the same port: every topic is gone, then created."""
        assert self.proc.proc is not None
        os.kill(self.proc.proc.pid, signal.SIGKILL)
        self.proc.proc.wait(10)
        self.proc, _ = broker_process(self._home, self._port)
        self.start(topic)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    try:
        yield b
    finally:
        b.proc.stop()


def rollup_count(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT coalesce(sum(count), 0) FROM usage_rollups_minute").fetchone()
    return int(row[0]) if row else 0


def assert_view_matches(pool: ConnectionPool, redis_url: str) -> None:
    view = redis_view(redis_url)

    def caught_up() -> bool:
        marks = view.watermarks() or {}
        return all(marks.get(s) == o for s, o in stored_offsets(pool).items())

    wait_for(caught_up, 60, "the view to catch up")
    mismatches = verify(view, pool, aggregation_of, SystemClock().now_ms())
    assert mismatches == [], [str(m) for m in mismatches[:10]]


def test_a_restarted_broker_is_counted_from_its_start(
    pool: ConnectionPool,
    service_env: dict[str, str],
    redis_url: str,
    broker: Broker,
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    topic = "meterline.usage.v1"
    broker.start(topic)
    env = {
        **service_env,
        "METERLINE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "METERLINE_KAFKA_TOPIC": topic,
        "METERLINE_KAFKA_DLQ_TOPIC": f"{topic}.dlq",
    }
    sizes = ((3000, 1), (400, 2), (300, 3), (200, 4))
    old, live, later, last = (make_stream(tenant, n, seed=s) for n, s in sizes)
    publish(broker.bootstrap, topic, old.events)
    log = tmp_path / "agg.log"
    with running(Aggregator(env, log)):
        wait_for(lambda: ledger_count(pool) == old.unique, 90, "the first log to be counted")
        broker.restart(topic)  # the aggregator runs through it
        publish(broker.bootstrap, topic, live.events)
        want = old.unique + live.unique
        wait_for(lambda: ledger_count(pool) == want, 90, "the second log to be counted")
        assert_view_matches(pool, redis_url)
    broker.restart(topic)  # the aggregator is stopped: a second `make run`
    publish(broker.bootstrap, topic, later.events)
    with running(Aggregator(env, log)):
        want += later.unique
        wait_for(lambda: ledger_count(pool) == want, 90, "the third log to be counted")
        assert_view_matches(pool, redis_url)
    publish(broker.bootstrap, topic, last.events)  # same broker: the positions hold
    with running(Aggregator(env, log)) as (agg,):
        want += last.unique
        wait_for(lambda: ledger_count(pool) == want, 90, "the rest of the log to be counted")
        assert_view_matches(pool, redis_url)
        assert agg.get("/readyz").status_code == 200
        assert "meterline_aggregator_halted_partitions 0.0" in agg.get("/metrics").text
    assert rollup_count(pool) == want
