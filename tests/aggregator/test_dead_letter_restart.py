"""Dead letters after a broker restart (issue 19). The dead-letter producer is idempotent: a
restarted memory-only broker no longer knows its producer id, and librdkafka then retries with
a new epoch forever. The publisher must replace that producer, as the ingest publisher does, so
the aggregator's outbox drains again instead of waiting on the broker for ever."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from meterline.errors import Unavailable
from meterline.kafka.dlq import DeadLetter, DeadLetterPublisher, read_dead_letters
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
from tests.aggregator.test_incarnation import Broker, broker  # noqa: F401

pytestmark = pytest.mark.integration
TOPIC = "meterline.usage.v1"
DLQ = f"{TOPIC}.dlq"
RECOVERY_S = 20.0


def letter(n: int) -> DeadLetter:
    return DeadLetter(b"1/cust00", f"{{poison {n}".encode(), "", TOPIC, -1, -1)


def outbox(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT count(*) FROM dead_letter_outbox").fetchone()
    return int(row[0]) if row else 0


def test_the_dead_letter_publisher_delivers_again_after_the_broker_restarts(
    broker: Broker,  # noqa: F811
) -> None:
    broker.start(TOPIC)
    publisher = DeadLetterPublisher(broker.bootstrap, DLQ)
    try:
        publisher.publish([letter(0)])
        broker.restart(TOPIC)
        deadline, failures = time.monotonic() + RECOVERY_S, []
        while True:
            try:
                publisher.publish([letter(1)], timeout_s=3.0)
                break
            except Unavailable as exc:
                failures.append(exc.message)
                assert time.monotonic() < deadline, f"never delivered again: {failures[-3:]}"
    finally:
        publisher.close()
    print(f"delivered again after {len(failures)} refused attempts")
    got = [d.value for d in read_dead_letters(broker.bootstrap, DLQ, timeout_s=10)]
    assert letter(1).value in got


def test_the_outbox_drains_after_the_broker_restarts(
    pool: ConnectionPool,
    service_env: dict[str, str],
    broker: Broker,  # noqa: F811
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    broker.start(TOPIC)
    env = {
        **service_env,
        "METERLINE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "METERLINE_KAFKA_TOPIC": TOPIC,
        "METERLINE_KAFKA_DLQ_TOPIC": DLQ,
    }
    before, after = make_stream(tenant, 200, seed=31), make_stream(tenant, 200, seed=32)
    feeder = DeadLetterPublisher(broker.bootstrap, DLQ)
    with running(Aggregator(env, tmp_path / "agg.log")):
        feeder.republish(TOPIC, [letter(0)])
        publish(broker.bootstrap, TOPIC, before.events)
        wait_for(lambda: ledger_count(pool) == before.unique, 60, "the first events")
        wait_for(lambda: outbox(pool) == 0, 30, "the first letter to be published")
        broker.restart(TOPIC)
        feeder.close()
        feeder = DeadLetterPublisher(broker.bootstrap, DLQ)  # tests the aggregator's, not this one
        feeder.republish(TOPIC, [letter(1)])
        publish(broker.bootstrap, TOPIC, after.events)
        want = before.unique + after.unique
        wait_for(lambda: ledger_count(pool) == want, 60, "the events after the restart")
        wait_for(lambda: outbox(pool) == 0, RECOVERY_S, "the outbox to drain after the restart")
        assert consumed(pool) == len(after.events) + 1
    feeder.close()
    got = [d.value for d in read_dead_letters(broker.bootstrap, DLQ, timeout_s=10)]
    assert letter(1).value in got
