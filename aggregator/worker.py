"""The consume loop: collect a micro-batch, dead-letter the poison, commit, update the view.

    consumer thread:  collect (<= batch_size records, or batch_ms after the first once the
                        committer is free) -> decode -> prepare (first copies, COPY text)
                        -> hand the batch to the committer (waits for the one before)
    committer thread: dead letters published and acknowledged
                        -> ONE Postgres transaction (ledger, rollups, offsets)  [inside_txn]
                        -> the view, per partition, gated by watermarks       [after_commit]
                        -> done                                               [between_batches]

The two threads overlap: while Postgres commits one batch, the next is read, decoded and
prepared (most of the aggregator's own CPU). The committer is the slower stage (it waits for
Postgres), so the consumer does the per-event work that needs no I/O. At most one batch is
committing and one being collected. A batch whose time is up keeps filling while the one before
it still commits (it could not start earlier anyway), so batches grow under load and stay
short, for freshness, when it is light.

Positions (the next offset to read per partition) come from Postgres at assignment; each batch
starts where the one before it ended, and its transaction moves a stored offset only from
exactly that start (the fence). So when a batch is refused, every later batch of its partitions
is refused too: the consumer waits for the committer, drops what it holds for those
partitions and reads them again from the offsets in Postgres. Rebalance callbacks and that
resync wait for the committer first, so they never race a commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import Message

from aggregator.batch import AggregationOf, Batch, decode_batch, reservations
from aggregator.columns import Events
from aggregator.faults import Hooks
from aggregator.ledger import Committed, Fenced, LedgerWriter, Prepared, prepare
from aggregator.metrics import AggregatorMetrics
from aggregator.progress import Progress
from aggregator.retry import Retrier, ShuttingDown
from aggregator.viewsync import ViewSync
from meterline.kafka.consumer import PositionedConsumer, Positions, Revoked
from meterline.kafka.dlq import DeadLetterPublisher

log = logging.getLogger(__name__)
ConsumerFactory = Callable[[Positions, Revoked], PositionedConsumer]
LAG_EVERY_S = 2.0
_NO_EVENTS = Events()


@dataclass
class WorkerParts:
    topic: str
    batch_size: int
    batch_ms: int
    consumer_factory: ConsumerFactory
    writer: LedgerWriter
    dlq: DeadLetterPublisher
    view_sync: ViewSync
    stored_offsets: Callable[[], dict[str, int]]
    aggregation_of: AggregationOf
    retrier: Retrier
    metrics: AggregatorMetrics
    progress: Progress
    hooks: Hooks
    stopping: threading.Event


class Worker:
    def __init__(self, parts: WorkerParts) -> None:
        self._p = parts
        self._positions: dict[int, int | None] = {}
        self._buffer: list[Message] = []
        self._to_check: list[int] = []
        self._to_resync: set[int] = set()
        self._lag_at = 0.0
        self._consumer: PositionedConsumer | None = None
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="committer")
        self._pending: Future[None] | None = None

    def run(self) -> None:
        """Consume until `stopping` is set; the batches in hand are finished first (drain)."""
        p = self._p
        try:
            stored = p.retrier.call(p.stored_offsets, "postgres")
            p.view_sync.ensure_current(stored, [])
            self._consumer = p.consumer_factory(self._on_assign, self._on_revoke)
            while not p.stopping.is_set():
                self._step(self._consumer)
            self._wait_for_committer()
        except ShuttingDown:
            log.info("shutting down during an outage; uncommitted work is read again later")
        finally:
            p.progress.running = False
            self._committer.shutdown(wait=True, cancel_futures=True)
            if self._consumer is not None:
                self._consumer.close()

    def _on_assign(self, partitions: list[int]) -> dict[int, int | None]:
        self._wait_for_committer()
        w = self._p.writer
        found = self._p.retrier.call(lambda: w.positions(partitions), "postgres", w.reset)
        self._positions.update(found)
        self._to_check.extend(partitions)
        return found

    def _on_revoke(self, partitions: list[int]) -> None:
        self._wait_for_committer()  # finish the batch in flight while these are still ours
        lost = set(partitions)
        self._buffer = [m for m in self._buffer if m.partition() not in lost]
        self._to_resync -= lost
        for part in lost:
            self._positions.pop(part, None)
            self._p.metrics.lag.labels(str(part)).set(0)

    def _step(self, consumer: PositionedConsumer) -> None:
        if self._to_resync:
            self._wait_for_committer()
            self._resync(consumer)
        records = self._collect(consumer)
        if self._to_check:
            self._wait_for_committer()
            stored = self._p.retrier.call(self._p.stored_offsets, "postgres")
            self._p.view_sync.ensure_current(stored, self._to_check)
            self._to_check = []
        if records:
            self._submit(prepare(decode_batch(records, self._p.topic)), time.monotonic())
        if time.monotonic() - self._lag_at > LAG_EVERY_S:
            self._update_lag(consumer)

    def _submit(self, prepared: Prepared, started: float) -> None:
        """Hand a batch to the committer once the batch before it is done. A batch of a
        partition waiting to be read again is not committed (it would be refused)."""
        batch = prepared.batch
        self._wait_for_committer()
        if self._to_resync.intersection(batch.partitions):
            self._to_resync.update(batch.partitions)
            return
        starts = {part: self._positions.get(part) for part in batch.partitions}
        self._positions.update(batch.ends)
        self._pending = self._committer.submit(self._process, prepared, starts, started)

    def _committing(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def _wait_for_committer(self) -> None:
        """Wait for the batch in flight, if any; its exception (e.g. ShuttingDown) is raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _collect(self, consumer: PositionedConsumer) -> list[Message]:
        p = self._p
        self._buffer = []
        deadline: float | None = None
        while not p.stopping.is_set() and len(self._buffer) < p.batch_size:
            wait = 0.1 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                if not self._committing():
                    break
                wait = 0.005  # it could not start before the batch in flight ends: keep filling
            want = p.batch_size - len(self._buffer)
            got = p.retrier.call(lambda: consumer.poll(want, wait), "kafka")  # noqa: B023
            mine = consumer.assigned
            if not mine.issuperset(map(Message.partition, got)):
                got = [m for m in got if m.partition() in mine]
            self._buffer.extend(got)
            if not self._buffer:
                break
            if deadline is None:
                deadline = time.monotonic() + p.batch_ms / 1000
        return self._buffer

    def _process(self, prepared: Prepared, starts: dict[int, int | None], started: float) -> None:
        """On the committer thread: dead letters, the transaction, the view, the metrics."""
        p, batch = self._p, prepared.batch
        if batch.poison:
            p.retrier.call(lambda: p.dlq.publish(batch.poison), "kafka")
            p.metrics.dead_letters.inc(len(batch.poison))
            p.metrics.events.labels("dead_letter").inc(len(batch.poison))
        try:
            done = p.retrier.call(
                lambda: p.writer.commit(
                    prepared, starts, p.aggregation_of, lambda: p.hooks.at("inside_txn")
                ),
                "postgres",
                p.writer.reset,
            )
        except Fenced as exc:
            log.warning(
                "batch fenced: another consumer owns a partition", extra={"error": str(exc)}
            )
            p.metrics.fenced.inc()
            self._to_resync.update(batch.partitions)
            return
        p.hooks.at("after_commit")
        self._apply_view(done)
        self._record(batch, done, started)
        p.hooks.at("between_batches")

    def _apply_view(self, done: Committed) -> None:
        for part, end in done.ends.items():
            counted = reservations(done.new_events.get(part, _NO_EVENTS))
            deltas = done.deltas.get(part, [])
            self._p.view_sync.apply(part, done.previous[part], end, deltas, counted)

    def _record(self, batch: Batch, done: Committed, started: float) -> None:
        m = self._p.metrics
        counted = sum(len(es) for es in done.new_events.values())
        m.events.labels("counted").inc(counted)
        m.events.labels("duplicate").inc(done.duplicates)
        m.batch_size.observe(batch.records)
        m.batch_seconds.observe(time.monotonic() - started)
        self._p.progress.committed()

    def _resync(self, consumer: PositionedConsumer) -> None:
        """Read the partitions waiting for it again from their offsets in Postgres."""
        parts = sorted(self._to_resync & consumer.assigned)
        self._to_resync = set()
        w = self._p.writer
        found = self._p.retrier.call(lambda: w.positions(parts), "postgres", w.reset)
        for part, offset in found.items():
            self._positions[part] = offset
            consumer.seek(part, offset)

    def _update_lag(self, consumer: PositionedConsumer) -> None:
        self._lag_at = time.monotonic()
        ends = consumer.end_offsets(sorted(consumer.assigned), timeout_s=1.0)
        lag = {part: max(0, end - (self._positions.get(part) or 0)) for part, end in ends.items()}
        for part, value in lag.items():
            self._p.metrics.lag.labels(str(part)).set(value)
        self._p.progress.lag(lag)
