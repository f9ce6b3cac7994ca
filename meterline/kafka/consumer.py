"""A group consumer whose positions come from the caller (Postgres), not from Kafka.

`PositionedConsumer` wraps confluent-kafka's Consumer:

- on assignment it asks `positions(partitions)` for the next offset of each partition and
  assigns the partitions at exactly those offsets (the earliest offset where it returns `None`);
- on revocation it calls `revoked(partitions)` first, so the caller can abandon the records of
  those partitions it holds (the new owner reads them again from the stored offsets);
- `poll()` returns confluent-kafka's messages as they are (building an object of our own per
  message cost as much as decoding it); partition EOFs are dropped, other errors raise
  KafkaFailure;
- `pause(partition)` stops fetching a partition until `resume(partition, offset)`; a partition
  paused while it is being assigned (from the positions callback) is paused as soon as it is.

Both callbacks run inside `poll()`, on the caller's thread. Kafka's committed offsets are never
read: `show_positions` commits offsets to the group for others to see (lag monitors and
autoscalers), not to resume from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from meterline.kafka.config import consumer_config

log = logging.getLogger(__name__)

# A consumed record: confluent-kafka's Message itself, so callers read it through its own C
# methods (`Record.partition`, `.offset`, `.value`) with no call of ours per record.
Record = Message
Positions = Callable[[list[int]], dict[int, int | None]]
Revoked = Callable[[list[int]], None]


class KafkaFailure(RuntimeError):
    """The broker reported an error that is not a routine end-of-partition."""


class PositionedConsumer:
    """One consumer of `topic` in `group`; not thread-safe (use it from one thread)."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topic: str,
        positions: Positions,
        revoked: Revoked,
        **overrides: Any,
    ) -> None:
        self.topic = topic
        self._bootstrap = bootstrap
        self._positions = positions
        self._revoked = revoked
        self._assigned: set[int] = set()
        self._paused: set[int] = set()
        config = consumer_config(bootstrap, group, on_commit=_commit_failed, **overrides)
        self._consumer = Consumer(config)
        self._consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    @property
    def assigned(self) -> frozenset[int]:
        return frozenset(self._assigned)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        wanted = [tp.partition for tp in partitions]
        stored = self._positions(wanted)
        tps = [TopicPartition(self.topic, p, _target(stored.get(p))) for p in wanted]
        consumer.assign(tps)
        self._assigned = set(wanted)
        held = self._paused & self._assigned
        if held:
            consumer.pause([TopicPartition(self.topic, p) for p in sorted(held)])
        log.info("assigned partitions", extra={"partitions": wanted, "offsets": stored})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = [tp.partition for tp in partitions]
        self._revoked(lost)
        self._assigned -= set(lost)
        self._paused -= set(lost)
        consumer.unassign()
        log.info("revoked partitions", extra={"partitions": lost})

    def poll(self, max_records: int, timeout_s: float) -> list[Message]:
        """Up to `max_records` messages, waiting at most `timeout_s` for the first."""
        messages: list[Message] = self._consumer.consume(max_records, timeout_s)
        if any(map(Message.error, messages)):  # rare: checked one by one only then
            messages = [m for m in messages if _routine(m)]
        return messages

    def seek(self, partition: int, offset: int | None) -> None:
        """Read `partition` again from `offset` (the earliest when `None`)."""
        self._consumer.seek(TopicPartition(self.topic, partition, _target(offset)))

    def pause(self, partition: int) -> None:
        """Fetch nothing more of `partition` until `resume` (or until it is revoked)."""
        self._paused.add(partition)
        if partition in self._assigned:
            self._consumer.pause([TopicPartition(self.topic, partition)])

    def resume(self, partition: int, offset: int | None) -> None:
        """Fetch `partition` again, from `offset` (the earliest when `None`)."""
        self._paused.discard(partition)
        if partition in self._assigned:
            tp = TopicPartition(self.topic, partition, _target(offset))
            self._consumer.resume([tp])
            self._consumer.seek(tp)

    def end_offsets(self, partitions: Sequence[int], timeout_s: float = 2.0) -> dict[int, int]:
        """The log-end offset of each partition (for lag); partitions the broker does not
        answer for are left out. The figure every fetch response brings is used when there is
        one, so a busy consumer does not wait for a broker round trip per partition."""
        ends: dict[int, int] = {}
        for p in partitions:
            tp = TopicPartition(self.topic, p)
            try:
                got = self._consumer.get_watermark_offsets(tp, cached=True)
                if got is None or got[1] < 0:
                    got = self._consumer.get_watermark_offsets(tp, timeout=timeout_s)
            except KafkaException:
                continue
            if got is not None:
                ends[p] = int(got[1])
        return ends

    def beyond_end(self, positions: dict[int, int], timeout_s: float = 5.0) -> dict[int, int]:
        """The partitions whose log ends before the given next offsets, with the log end the
        broker reports. A broker may report too small an end (Tansu reports the base offset
        of the last record batch, plus one), so a position past the reported end counts only
        when the record just before it cannot be read either. Blocks up to `timeout_s` per
        such partition; a partition the broker does not answer for is left out."""
        ends = self.end_offsets(sorted(positions), timeout_s)
        past = {p: end for p, end in ends.items() if positions[p] > end}
        return {
            p: end for p, end in past.items() if not self._readable(p, positions[p] - 1, timeout_s)
        }

    def _readable(self, partition: int, offset: int, timeout_s: float = 5.0) -> bool:
        """True when a record at `offset` or later can be read from `partition`."""
        probe = Consumer(consumer_config(self._bootstrap, "meterline-probe", **_PROBE))
        try:
            probe.assign([TopicPartition(self.topic, partition, offset)])
            for message in probe.consume(1, timeout_s):
                if message.error() is None:
                    return (message.offset() or 0) >= offset
            return False
        finally:
            probe.close()

    def show_positions(self, offsets: dict[int, int]) -> None:
        """Commit these next offsets to the consumer group without waiting for the broker
        (lag monitors read them; this consumer never does). A failed commit is logged and
        otherwise ignored: the next one replaces it."""
        tps = [TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())]
        try:
            self._consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as exc:
            log.warning("could not commit offsets to the group", extra={"error": str(exc)})

    def close(self) -> None:
        """Leave the group (the partitions are reassigned at once) and free the client."""
        self._consumer.close()


_PROBE = {"auto.offset.reset": "error", "enable.partition.eof": False}


def _commit_failed(err: KafkaError | None, _partitions: list[TopicPartition]) -> None:
    """confluent-kafka's report of an asynchronous commit (served inside `poll()`)."""
    if err is not None and err.code() != KafkaError._NO_OFFSET:
        log.warning("committing offsets to the group failed", extra={"error": str(err)})


def _target(offset: int | None) -> int:
    return OFFSET_BEGINNING if offset is None else offset


def _routine(message: Message) -> bool:
    """False for a partition EOF; raises on any other error; True for a message."""
    err = message.error()
    if err is None:
        return True
    if err.code() == KafkaError._PARTITION_EOF:
        return False
    raise KafkaFailure(str(err))
