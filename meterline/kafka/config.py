"""librdkafka settings that Meterline relies on, in one place.

Facts measured against the embedded Tansu broker (DESIGN.md): the default
`fetch.queue.backoff.ms` (1000) stalls a consumer that does real work, and group joins take
~23 s unless heartbeats are frequent. These values are right for Apache Kafka too.
"""

from __future__ import annotations

from typing import Any

MESSAGE_MAX_BYTES = 1_000_000
"""The largest Kafka message the producer sends (its `message.max.bytes`, librdkafka's default;
Apache Kafka's brokers take record batches up to 1,048,588 bytes by default). Not overridable:
ingest refuses an event that would not fit, before producing anything of its request, by this
same number."""
MESSAGE_OVERHEAD = 36
"""What librdkafka adds to a record's key and value when it checks `MESSAGE_MAX_BYTES` (its worst
case per record, format v2, no headers): a value fits if value + key + this <= the limit."""


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """An idempotent producer that waits for all in-sync replicas (no loss, no duplicates).

    Reconnects to a lost broker at least every second (librdkafka's default backs off to 10 s),
    so a restarted broker is used again within a second of being back."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "compression.type": "none",
        "queue.buffering.max.messages": 200_000,
        "queue.buffering.max.kbytes": 262_144,
        "message.timeout.ms": 30_000,
        "reconnect.backoff.max.ms": 1_000,
        **overrides,
        "message.max.bytes": MESSAGE_MAX_BYTES,
    }


def consumer_config(bootstrap: str, group: str, **overrides: Any) -> dict[str, Any]:
    """A group consumer whose offsets Meterline stores itself (no auto-commit)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 5,
        "fetch.queue.backoff.ms": 1,
        "heartbeat.interval.ms": 500,
        "session.timeout.ms": 6_000,
        "partition.assignment.strategy": "range",
        **overrides,
    }
