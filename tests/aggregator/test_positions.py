"""A stored position the log disagrees with stops its partition, visibly, until an operator
moves it (`meterline offsets reset`); dead letters are published once however often their batch
is written (issue 19, item 9). Real broker, Postgres and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from meterline.kafka.admin import TopicIncarnation
from meterline.kafka.consumer import PositionedConsumer
from meterline.kafka.dlq import DeadLetter, DeadLetterPublisher, read_dead_letters
from meterline.postgres.offsets import set_position, stored_positions
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
from tests.aggregator.test_incarnation import assert_view_matches
from tests.fixtures.services import Topics

pytestmark = pytest.mark.integration
GROUP = "meterline-aggregator"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterline_ops.main", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_position_beyond_the_log_end_stops_the_partition_until_an_operator_resets_it(
    pool: ConnectionPool,
    service_env: dict[str, str],
    kafka_topics: Topics,
    redis_url: str,
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    stream = make_stream(tenant, 2000)
    boot, topic = service_env["METERLINE_KAFKA_BOOTSTRAP"], kafka_topics.usage
    publish(boot, topic, stream.events)
    part, beyond = 0, 1_000_000
    set_position(pool, GROUP, topic, part, beyond, TopicIncarnation(boot, topic)())
    with running(Aggregator(service_env, tmp_path / "agg.log")) as (agg,):
        wait_for(lambda: "halted" in agg.get("/readyz").json(), 60, "/readyz to say why")
        assert agg.get("/readyz").status_code == 503
        why = agg.get("/readyz").json()["halted"][str(part)]
        assert why.startswith(f"stored position {beyond} is beyond the log end")
        metrics = agg.get("/metrics").text
        assert (
            'meterline_aggregator_position_mismatches_total{kind="beyond_log_end"} 1.0' in metrics
        )
        assert "meterline_aggregator_halted_partitions 1.0" in metrics
        assert ledger_count(pool) < stream.unique

        refused = cli(service_env, "offsets", "reset", "--partition", str(part), "--to", "99999")
        assert refused.returncode == 2 and "--to" in refused.stderr
        done = cli(service_env, "offsets", "reset", "--partition", str(part), "--to", "earliest")
        assert done.returncode == 0, done.stderr
        listed = cli(service_env, "offsets", "list")
        assert listed.returncode == 0 and "current" in listed.stdout, listed.stderr

        wait_for(lambda: ledger_count(pool) == stream.unique, 60, "the partition to resume")
        wait_for(lambda: agg.get("/readyz").status_code == 200, 30, "/readyz to pass")
        assert_view_matches(pool, redis_url)
    positions = {s.partition: s.next_offset for s in stored_positions(pool, GROUP, topic)}
    assert sum(positions.values()) == len(stream.events) and positions[part] < beyond


def test_beyond_end_trusts_a_readable_record_over_a_reported_log_end(
    service_env: dict[str, str], kafka_topics: Topics
) -> None:
    """Tansu reports a log end smaller than the real one (the last record batch's base offset
    plus one): a position is beyond the end only if the record before it cannot be read."""
    boot, topic = service_env["METERLINE_KAFKA_BOOTSTRAP"], kafka_topics.usage
    events = make_stream(1, 300).events
    publish(boot, topic, events)
    ends: dict[int, int] = {}
    reader = PositionedConsumer(boot, "test-ends", topic, lambda ps: dict.fromkeys(ps), print)
    try:
        deadline = time.monotonic() + 30
        while sum(ends.values()) < len(events) and time.monotonic() < deadline:
            for m in reader.poll(1000, 0.5):
                ends[m.partition()] = m.offset() + 1  # type: ignore[operator]
    finally:
        reader.close()
    fresh = PositionedConsumer(boot, "test-ends", topic, lambda ps: dict.fromkeys(ps), print)
    try:  # nothing fetched yet: the log ends are the broker's answer to a query
        assert fresh.beyond_end(ends, timeout_s=2) == {}
        beyond = {p: e + 1000 for p, e in ends.items()}
        assert set(fresh.beyond_end(beyond, timeout_s=2)) == set(ends)
    finally:
        fresh.close()


def test_a_batch_written_again_after_a_crash_publishes_its_dead_letters_once(
    pool: ConnectionPool,
    service_env: dict[str, str],
    kafka_topics: Topics,
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    stream = make_stream(tenant, 50)
    boot = service_env["METERLINE_KAFKA_BOOTSTRAP"]
    poison = DeadLetter(b"1/cust00", b"{not json", "", kafka_topics.usage, -1, -1)
    DeadLetterPublisher(boot, kafka_topics.dlq).republish(kafka_topics.usage, [poison])
    publish(boot, kafka_topics.usage, stream.events)
    total = len(stream.events) + 1
    for _ in range(2):  # each dies inside its first transaction: the batch is written again
        agg = Aggregator(
            service_env,
            tmp_path / "agg.log",
            METERLINE_AGGREGATOR_CRASH_AT="inside_txn:1.0",
            METERLINE_AGGREGATOR_BATCH_SIZE="5000",
        )
        agg.start()
        wait_for(lambda a=agg: not a.proc.alive(), 90, "a crash inside the transaction")  # type: ignore[misc]
    assert consumed(pool) == 0
    with running(Aggregator(service_env, tmp_path / "agg.log")):
        wait_for(lambda: consumed(pool) == total, 90, "every message to be consumed")
    letters = list(read_dead_letters(boot, kafka_topics.dlq))
    assert [x.value for x in letters] == [b"{not json"]
    with pool.connection() as conn:
        left = conn.execute("SELECT count(*) FROM dead_letter_outbox").fetchone()
    assert left == (0,)
