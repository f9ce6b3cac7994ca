"""A real round trip through each backing service, and the schema after migrations."""

from __future__ import annotations

import uuid
from datetime import date

import psycopg
import redis
from confluent_kafka import Consumer, Producer

from meterline.kafka import consumer_config, producer_config
from meterline.postgres import apply_migrations
from meterline.postgres.partitions import PartitionManager, drop_partitions_before
from tests.fixtures.services import Topics


def test_kafka_produce_and_consume_round_trip(kafka_bootstrap: str, kafka_topics: Topics) -> None:
    producer = Producer(producer_config(kafka_bootstrap))
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(50)}
    for key, value in sent.items():
        producer.produce(kafka_topics.usage, value, key)
    assert producer.flush(15) == 0

    consumer = Consumer(consumer_config(kafka_bootstrap, f"g-{uuid.uuid4().hex}"))
    consumer.subscribe([kafka_topics.usage])
    received: dict[bytes, bytes] = {}
    for _ in range(300):
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            received[msg.key()] = msg.value()
        if len(received) == len(sent):
            break
    consumer.close()
    assert received == sent


def test_postgres_schema_after_migrations(pg_conninfo: str) -> None:
    with psycopg.connect(pg_conninfo) as conn:
        assert apply_migrations(conn) == []  # the template is already current
        tables = {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    assert {
        "tenants",
        "api_keys",
        "usage_events",
        "usage_rollups_minute",
        "consumer_offsets",
    } <= tables


def test_ledger_partitions_are_created_on_demand_and_dropped(pg_conninfo: str) -> None:
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        manager = PartitionManager()
        manager.ensure(conn, [date(2026, 11, 20), date(2026, 11, 21)])
        manager.ensure(conn, [date(2026, 11, 21)])
        PartitionManager().ensure(conn, [date(2026, 11, 21)])  # another process: no error
        conn.execute(
            "INSERT INTO usage_events VALUES (1, 'e1', '2026-11-21', 'c', 'm', now(), 1.5, now())"
        )
        assert drop_partitions_before(conn, date(2026, 11, 21)) == ["usage_events_20261120"]
        assert conn.execute("SELECT count(*) FROM usage_events").fetchone() == (1,)


def test_redis_command(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.zadd("k", {"a": 1.0})
    assert client.zscore("k", "a") == 1.0
