"""The dead-letter topic: messages that can never be processed, with the reason, and the tools
to list them and send them back.

A dead letter keeps the original key and value unchanged; its headers say why and where from:
`meterline-reason`, `meterline-source-topic`, `meterline-source-partition`,
`meterline-source-offset`. Publishing is synchronous: `publish` returns once the broker has
acknowledged every letter, so a consumer may then move its offsets past them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from meterline.errors import Unavailable
from meterline.kafka.config import consumer_config, producer_config

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


class DeadLetterPublisher:
    def __init__(self, bootstrap: str, topic: str, **overrides: Any) -> None:
        self.topic = topic
        self._producer = Producer(producer_config(bootstrap, **{"linger.ms": 1, **overrides}))

    def publish(self, letters: Sequence[DeadLetter], timeout_s: float = 15.0) -> None:
        """Block until every letter is acknowledged; raise Unavailable otherwise."""
        errors: list[str] = []

        def report(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        for letter in letters:
            self._producer.produce(
                self.topic, letter.value, letter.key, headers=letter.headers(), on_delivery=report
            )
        left = self._producer.flush(timeout_s)
        if left or errors:
            raise Unavailable(f"dead-letter topic did not acknowledge: {errors or left}")

    def republish(self, topic: str, letters: Sequence[DeadLetter], timeout_s: float = 15.0) -> None:
        """Send the letters' original key and value to `topic` (a replay); blocks until acked."""
        for letter in letters:
            self._producer.produce(topic, letter.value, letter.key)
        if self._producer.flush(timeout_s):
            raise Unavailable(f"topic {topic} did not acknowledge the replay")

    def close(self) -> None:
        self._producer.flush(5.0)


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
