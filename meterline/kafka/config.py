"""librdkafka settings that Meterline relies on, in one place.

Facts measured against the embedded Tansu broker (DESIGN.md): the default
`fetch.queue.backoff.ms` (1000) stalls a consumer that does real work, and group joins take
~23 s unless heartbeats are frequent. These values are right for Apache Kafka too.
"""

from __future__ import annotations

from typing import Any


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """An idempotent producer that waits for all in-sync replicas (no loss, no duplicates)."""
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
        **overrides,
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
