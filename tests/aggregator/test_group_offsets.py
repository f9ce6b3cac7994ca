"""Kafka sees the aggregator's true lag: the consumer group's committed offsets follow the
positions the aggregator commits to Postgres, across a SIGKILL and a rebalance."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from meterline.kafka.admin import group_offsets
from meterline.postgres.offsets import stored_positions
from tests.aggregator.support import (
    Aggregator,
    consumed,
    make_stream,
    publish,
    running,
    setup_tenant,
    wait_for,
)
from tests.fixtures.services import Topics

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
PARTITIONS = [0, 1, 2, 3]


def test_the_group_offsets_follow_the_positions_in_postgres(
    pool: ConnectionPool,
    service_env: dict[str, str],
    kafka_topics: Topics,
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    stream = make_stream(tenant, 6_000, dup_rate=0.0)
    boot, topic = service_env["METERLINE_KAFKA_BOOTSTRAP"], kafka_topics.usage
    group = f"group-of-{topic}"
    env = {**service_env, "METERLINE_AGGREGATOR_GROUP_ID": group}

    def in_kafka() -> dict[int, int | None]:
        return group_offsets(boot, group, topic, PARTITIONS)

    def in_postgres() -> dict[int, int | None]:
        found = {s.partition: s.next_offset for s in stored_positions(pool, group, topic)}
        return {p: found.get(p) for p in PARTITIONS}

    assert set(in_kafka().values()) == {None}
    a, b = Aggregator(env, tmp_path / "a.log"), Aggregator(env, tmp_path / "b.log")
    with running(a, b):
        publish(boot, topic, stream.events[:3_000])
        wait_for(lambda: consumed(pool) == 3_000, 90, "the first half to be counted")
        wait_for(lambda: in_kafka() == in_postgres(), 20, "Kafka to see the positions")
        a.kill()  # b takes every partition over and goes on from the positions in Postgres
        publish(boot, topic, stream.events[3_000:])
        wait_for(lambda: consumed(pool) == 6_000, 90, "the second half to be counted")
        wait_for(lambda: in_kafka() == in_postgres(), 20, "Kafka to see b's positions")
    assert sum(o or 0 for o in in_kafka().values()) == 6_000
