"""The aggregator's positions shown to Kafka, for visibility only.

Postgres holds the positions the aggregator resumes from (written in each batch's transaction,
with the rows they cover). Kafka's own view of the consumer group (its committed offsets) is what
lag-based autoscalers (KEDA's Kafka scaler), `kafka-consumer-groups` and Kafka exporters read;
left empty, they see the whole log as lag. So after each Postgres commit the same next offsets
are committed to the group too, asynchronously: a lost or late Kafka commit costs only a lag
figure that is briefly too high, never an event, because the consumer never reads its start
positions from Kafka.

Threads: the committer thread records what Postgres committed (`committed`); the consumer
thread, which owns the Kafka client, sends it (`flush`) once per loop step and when partitions
are revoked, only for partitions it still holds (a commit for a partition another member now
owns could move the group's offset back).

Not shown: a position moved without a batch (`meterline offsets reset`, a new incarnation of the
topic) reaches Kafka with the next batch of that partition.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol


class GroupCommitter(Protocol):
    """`meterline.kafka.consumer.PositionedConsumer`'s side that this module uses."""

    @property
    def assigned(self) -> frozenset[int]: ...

    def show_positions(self, offsets: dict[int, int]) -> None: ...


class VisibleOffsets:
    """The next offsets committed to Postgres and not yet shown to Kafka. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[int, int] = {}

    def committed(self, ends: dict[int, int]) -> None:
        """Postgres committed these next offsets (on the committer thread)."""
        with self._lock:
            self._due.update(ends)

    def flush(self, consumer: GroupCommitter, only: Iterable[int] | None = None) -> None:
        """Commit what is due to the group for the partitions `consumer` holds (`only` these
        when given), without waiting for the broker; the rest of what is due is dropped when
        it is not held any more. On the consumer thread."""
        held = consumer.assigned if only is None else consumer.assigned & frozenset(only)
        with self._lock:
            due = {p: o for p, o in self._due.items() if p in held}
            if only is None:
                self._due = {}
            else:
                for part in only:
                    self._due.pop(part, None)
        if due:
            consumer.show_positions(due)
