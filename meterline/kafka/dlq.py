"""The dead-letter topic: messages that can never be processed, with the reason, and the tools
to list them and send them back.

A dead letter keeps the original key and value unchanged; its headers say why and where from:
`meterline-reason`, `meterline-source-topic`, `meterline-source-partition`,
`meterline-source-offset`. Publishing is synchronous: `publish` returns once the broker has
acknowledged every letter, so a consumer may then move its offsets past them.

The producer is idempotent, so a broker that lost its state (a restarted memory-only broker)
leaves it retrying for ever; it is a `RenewingProducer`, replaced as the ingest publisher's is
(`meterline.kafka.producer`). A call whose letters were on the replaced producer raises
Unavailable (their fate unknown): the caller publishes them again, on the new producer.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from meterline.errors import Unavailable
from meterline.kafka.config import consumer_config, producer_config
from meterline.kafka.producer import Delivery, RenewingProducer

POLL_S = 0.1
"""How long the poller thread waits for reports and statistics in one round."""

REASON = "meterline-reason"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    offset: int = -1  # its own offset in the dead-letter topic (when read back)
    partition: int = -1

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return [
            (REASON, self.reason.encode()),
            ("meterline-source-topic", self.source_topic.encode()),
            ("meterline-source-partition", str(self.source_partition).encode()),
            ("meterline-source-offset", str(self.source_offset).encode()),
        ]


Message = tuple[str, bytes | None, bytes | None, list[tuple[str, str | bytes | None]] | None]
"""(topic, value, key, headers)"""


class DeadLetterPublisher:
    """Publishes letters and replays; safe from several threads. A thread of its own serves the
    producer's reports and statistics (which tell a stuck producer) until `close`."""

    def __init__(self, bootstrap: str, topic: str, **overrides: Any) -> None:
        self.topic = topic
        self._stop = threading.Event()
        config = producer_config(bootstrap, **{"linger.ms": 1, **overrides})
        self._producers = RenewingProducer(config, self._stop)
        self._poller = threading.Thread(target=self._poll, name="kafka-dlq", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producers.serve(POLL_S)

    def publish(self, letters: Sequence[DeadLetter], timeout_s: float = 15.0) -> None:
        """Block until every letter is acknowledged; raise Unavailable otherwise."""
        self._send([(self.topic, d.value, d.key, d.headers()) for d in letters], timeout_s)

    def republish(self, topic: str, letters: Sequence[DeadLetter], timeout_s: float = 15.0) -> None:
        """Send the letters' original key and value to `topic` (a replay); blocks until acked."""
        self._send([(topic, d.value, d.key, None) for d in letters], timeout_s)

    def _send(self, messages: Sequence[Message], timeout_s: float) -> None:
        """Produce every message and wait for their reports; Unavailable if one is refused or
        purged (its producer was replaced), or not acknowledged within `timeout_s`."""
        gen = self._producers.current
        if gen.dead:
            self._producers.renew(gen)
            gen = self._producers.current
        delivery = Delivery(len(messages))
        try:
            for topic, value, key, headers in messages:
                gen.producer.produce(topic, value, key, headers=headers, on_delivery=delivery)
        except (BufferError, KafkaException, RuntimeError) as exc:  # full, fatal, or retired
            raise Unavailable(f"the dead-letter producer refused a message: {exc}") from None
        where = ", ".join(sorted({m[0] for m in messages}))
        if not delivery.done.wait(timeout_s):
            raise Unavailable(f"{where} did not acknowledge within {timeout_s} s")
        if delivery.error is not None:
            raise Unavailable(f"{where} did not acknowledge: {delivery.error}")

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush what is queued (up to `timeout_s`) and stop."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._poller.join(1.0)
        self._producers.close(timeout_s)


def read_dead_letters(bootstrap: str, topic: str, timeout_s: float = 30.0) -> Iterator[DeadLetter]:
    """Every letter now in the topic, oldest first per partition (no consumer group is joined:
    each partition is read from its start to its current end)."""
    consumer = Consumer(consumer_config(bootstrap, f"meterline-dlq-reader-{uuid.uuid4().hex[:8]}"))
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            return
        ends = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is None:
                    yield _letter(msg)
                    if (msg.offset() or 0) + 1 >= ends.get(msg.partition() or 0, 0):
                        ends.pop(msg.partition() or 0, None)
    finally:
        consumer.close()


def _letter(msg: Any) -> DeadLetter:
    headers = {k: v.decode() for k, v in (msg.headers() or [])}
    return DeadLetter(
        key=msg.key(),
        value=msg.value(),
        reason=headers.get(REASON, "unknown"),
        source_topic=headers.get("meterline-source-topic", ""),
        source_partition=int(headers.get("meterline-source-partition", "-1")),
        source_offset=int(headers.get("meterline-source-offset", "-1")),
        offset=msg.offset(),
        partition=msg.partition(),
    )
