"""The worker's two threads against in-memory parts: a batch refused by the fence, and every
batch read after it, are dropped and their partitions read again from the stored offsets, so
every offset is committed exactly once, by this worker or by the owner that fenced it."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Message
from prometheus_client import CollectorRegistry

from aggregator.faults import Hooks
from aggregator.metrics import AggregatorMetrics
from aggregator.postgres.ledger import Committed, Fenced, Prepared
from aggregator.progress import Progress
from aggregator.retry import Retrier
from aggregator.worker import Worker, WorkerParts
from meterline.catalog.model import Aggregation
from meterline.events import UsageEvent, encode_event
from meterline.kafka.consumer import Positions, Revoked

PARTITIONS = (0, 1)
PER_PARTITION = 400


class FakeConsumer:
    """Serves fixed records per partition from a position, like a broker; assigns on first poll."""

    def __init__(
        self, records: dict[int, list[Message]], positions: Positions, jump_at: int = 0
    ) -> None:
        self._records = records
        self._positions = positions
        self._at: dict[int, int] = {}
        self._paused: set[int] = set()
        self._jump_at = jump_at  # partition 0 starts again at 0 there once (an offset reset)
        self.seeks: list[tuple[int, int | None]] = []
        self.shown: list[dict[int, int]] = []  # offsets committed to the group, in order

    @property
    def assigned(self) -> frozenset[int]:
        return frozenset(self._at)

    def poll(self, max_records: int, timeout_s: float) -> list[Message]:
        if not self._at:
            found = self._positions(list(PARTITIONS))
            self._at = {p: found[p] or 0 for p in PARTITIONS}
        if self._jump_at and self._at[0] == self._jump_at:
            self._at[0], self._jump_at = 0, 0
        out: list[Message] = []
        for p in PARTITIONS:
            if p in self._paused:
                continue
            take = self._records[p][self._at[p] : self._at[p] + min(50, max_records - len(out))]
            self._at[p] += len(take)
            out += take
        if not out:
            time.sleep(min(timeout_s, 0.01))
        return out

    def seek(self, partition: int, offset: int | None) -> None:
        self.seeks.append((partition, offset))
        self._at[partition] = offset or 0

    def pause(self, partition: int) -> None:
        self._paused.add(partition)

    def resume(self, partition: int, offset: int | None) -> None:
        self._paused.discard(partition)
        self.seek(partition, offset)

    def end_offsets(self, partitions: list[int], timeout_s: float = 2.0) -> dict[int, int]:
        return {p: len(self._records[p]) for p in partitions}

    def beyond_end(self, positions: dict[int, int]) -> dict[int, int]:
        return {p: len(self._records[p]) for p, o in positions.items() if o > len(self._records[p])}

    def show_positions(self, offsets: dict[int, int]) -> None:
        assert offsets.keys() <= self.assigned
        self.shown.append(dict(offsets))

    def close(self) -> None:
        pass


class FencingWriter:
    """Stored offsets with the real writer's fence; before commit number `steal_at` another owner
    commits the next `stolen` offsets of partition 0, so this worker's batch is refused."""

    def __init__(self, stopping: threading.Event, steal_at: int, stolen: int = 30) -> None:
        self.stored: dict[int, int | None] = dict.fromkeys(PARTITIONS)
        self.ranges: dict[int, list[tuple[int, int, str]]] = {p: [] for p in PARTITIONS}
        self.fenced = 0
        self._calls = 0
        self._stopping = stopping
        self._steal_at, self._stolen = steal_at, stolen

    incarnation: str | None = None

    def positions(self, partitions: list[int]) -> dict[int, int | None]:
        return {p: self.stored[p] for p in partitions}

    def pending_letters(self) -> list[Any]:
        return []

    def reset(self) -> None:
        pass

    def commit(self, prepared: Prepared, positions: Mapping[int, int | None], *_: Any) -> Committed:
        batch = prepared.batch
        self._calls += 1
        time.sleep(0.02)  # long enough for the consumer thread to read the next batch meanwhile
        if self._calls == self._steal_at:
            start = self.stored[0] or 0
            self.stored[0] = start + self._stolen
            self.ranges[0].append((start, start + self._stolen, "other"))
        if any(self.stored[p] != positions[p] for p in batch.partitions):
            self.fenced += 1
            raise Fenced("not the owner")
        previous = {p: self.stored[p] for p in batch.partitions}
        for p in batch.partitions:
            self.ranges[p].append((positions[p] or 0, batch.ends[p], "worker"))
            self.stored[p] = batch.ends[p]
        if all(self.stored[p] == PER_PARTITION for p in PARTITIONS):
            self._stopping.set()
        return Committed(dict(batch.events), {}, previous, dict(batch.ends), 0)


class NoView:
    def apply(self, *_: Any) -> None:
        pass

    def ensure_current(self, *_: Any) -> None:
        pass

    def keep_current(self, *_: Any) -> None:
        pass


class NoDeadLetters:
    def publish(self, letters: Any) -> None:
        raise AssertionError("no poison in this stream")


def records() -> dict[int, list[Message]]:
    out: dict[int, list[Message]] = {}
    for p in PARTITIONS:
        out[p] = [
            Message(
                topic="t",
                partition=p,
                offset=o,
                value=encode_event(UsageEvent(1, f"p{p}-{o}", "c", "m", 1.0, 5, 5)),
            )
            for o in range(PER_PARTITION)
        ]
    return out


def run_worker(
    writer: FencingWriter,
    stopping: threading.Event,
    jump_at: int = 0,
    metrics: AggregatorMetrics | None = None,
    progress: Progress | None = None,
) -> FakeConsumer:
    made: list[FakeConsumer] = []

    def factory(positions: Positions, _revoked: Revoked) -> FakeConsumer:
        made.append(FakeConsumer(records(), positions, jump_at))
        return made[0]

    metrics = metrics or AggregatorMetrics(CollectorRegistry())
    parts = WorkerParts(
        topic="t",
        batch_size=60,
        batch_ms=5,
        consumer_factory=factory,  # type: ignore[arg-type]
        writer=writer,  # type: ignore[arg-type]
        dlq=NoDeadLetters(),  # type: ignore[arg-type]
        view_sync=NoView(),  # type: ignore[arg-type]
        stored_offsets=dict,
        aggregation_of=lambda _t, _m: Aggregation.SUM,
        retrier=Retrier(metrics, stopping),
        metrics=metrics,
        progress=progress or Progress(30.0),
        hooks=Hooks(),
        stopping=stopping,
    )
    thread = threading.Thread(target=Worker(parts).run)
    thread.start()
    thread.join(30)
    stopping.set()
    thread.join(5)
    assert not thread.is_alive()
    return made[0]


def covered_once(ranges: list[tuple[int, int, str]]) -> bool:
    ordered = sorted((start, end) for start, end, _ in ranges)
    at = 0
    for start, end in ordered:
        if start != at:
            return False
        at = end
    return at == PER_PARTITION


def test_a_fenced_batch_and_those_read_after_it_are_read_again_from_the_stored_offsets() -> None:
    stopping = threading.Event()
    writer = FencingWriter(stopping, steal_at=3)
    consumer = run_worker(writer, stopping)
    assert writer.fenced >= 1
    assert any(p == 0 for p, _ in consumer.seeks)
    assert any(who == "other" for _, _, who in writer.ranges[0])
    for p in PARTITIONS:
        assert covered_once(writer.ranges[p]), (p, sorted(writer.ranges[p]))


def test_without_a_fence_every_offset_is_committed_once_in_order() -> None:
    stopping = threading.Event()
    writer = FencingWriter(stopping, steal_at=0)
    consumer = run_worker(writer, stopping)
    assert writer.fenced == 0 and consumer.seeks == []
    for p in PARTITIONS:
        assert covered_once(writer.ranges[p])
        starts = [start for start, _, _ in writer.ranges[p]]
        assert starts == sorted(starts)


def test_a_batch_not_starting_at_its_position_stops_the_partition_until_it_is_moved() -> None:
    stopping = threading.Event()
    writer = FencingWriter(stopping, steal_at=0)
    metrics, progress = AggregatorMetrics(CollectorRegistry()), Progress(30.0)
    seen: list[dict[str, object]] = []

    def operator() -> None:
        while not stopping.is_set() and not progress.status()[1].get("halted"):
            time.sleep(0.01)
        seen.append(progress.status()[1])
        writer.stored[0] = 150  # `meterline offsets reset --partition 0 --to 150`

    helper = threading.Thread(target=operator)
    helper.start()
    consumer = run_worker(writer, stopping, jump_at=100, metrics=metrics, progress=progress)
    helper.join(5)
    assert seen and seen[0]["halted"] == {
        "0": "a batch starts at offset 0, the stored position is 100"
    }
    mismatches = metrics.registry.get_sample_value(
        "meterline_aggregator_position_mismatches_total", {"kind": "batch_start"}
    )
    assert mismatches == 1.0
    assert all(end > start for start, end, _ in writer.ranges[0])  # never backwards
    assert (0, 150) in consumer.seeks and writer.stored[0] == PER_PARTITION
    assert covered_once(writer.ranges[1])
    assert "halted" not in progress.status()[1]


def test_the_group_is_shown_each_committed_position_and_ends_at_the_last() -> None:
    stopping = threading.Event()
    writer = FencingWriter(stopping, steal_at=0)
    consumer = run_worker(writer, stopping)
    ranges = writer.ranges
    committed = {p: {end for _, end, who in ranges[p] if who == "worker"} for p in PARTITIONS}
    assert consumer.shown, "nothing was committed to the group"
    for shown in consumer.shown:
        assert all(offset in committed[p] for p, offset in shown.items())
    last: dict[int, int] = {}
    for shown in consumer.shown:
        assert all(offset > last.get(p, -1) for p, offset in shown.items())  # never backwards
        last.update(shown)
    assert last == dict.fromkeys(PARTITIONS, PER_PARTITION)
