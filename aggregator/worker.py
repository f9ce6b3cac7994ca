"""The consume loop: collect a micro-batch, dead-letter the poison, commit, update the view.

    collect (<= batch_size records or batch_ms after the first) -> decode
      -> dead letters published and acknowledged
      -> ONE Postgres transaction (ledger, rollups, fenced offsets)      [inside_txn]
      -> the view, per partition, gated by watermarks                     [after_commit]
      -> next batch                                                       [between_batches]

Positions (the next offset to read per partition) come from Postgres at assignment and move
only with a commit. On revocation the records held for the lost partitions are dropped; a batch
refused by the fence is dropped too and the partitions are read again from Postgres.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aggregator.batch import AggregationOf, Batch, decode_batch, reservations
from aggregator.faults import Hooks
from aggregator.ledger import Committed, Fenced, LedgerWriter
from aggregator.metrics import AggregatorMetrics
from aggregator.progress import Progress
from aggregator.retry import Retrier, ShuttingDown
from aggregator.viewsync import ViewSync
from meterline.kafka.consumer import PositionedConsumer, Positions, Record, Revoked
from meterline.kafka.dlq import DeadLetterPublisher

log = logging.getLogger(__name__)
ConsumerFactory = Callable[[Positions, Revoked], PositionedConsumer]
LAG_EVERY_S = 2.0


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
        self._buffer: list[Record] = []
        self._to_check: list[int] = []
        self._lag_at = 0.0
        self._consumer: PositionedConsumer | None = None

    def run(self) -> None:
        """Consume until `stopping` is set; the batch in hand is finished first (drain)."""
        p = self._p
        try:
            stored = p.retrier.call(p.stored_offsets, "postgres")
            p.view_sync.ensure_current(stored, [])
            self._consumer = p.consumer_factory(self._on_assign, self._on_revoke)
            while not p.stopping.is_set():
                self._step(self._consumer)
        except ShuttingDown:
            log.info("shutting down during an outage; uncommitted work is read again later")
        finally:
            p.progress.running = False
            if self._consumer is not None:
                self._consumer.close()

    def _on_assign(self, partitions: list[int]) -> dict[int, int | None]:
        w = self._p.writer
        found = self._p.retrier.call(lambda: w.positions(partitions), "postgres", w.reset)
        self._positions.update(found)
        self._to_check.extend(partitions)
        return found

    def _on_revoke(self, partitions: list[int]) -> None:
        lost = set(partitions)
        self._buffer = [r for r in self._buffer if r.partition not in lost]
        for part in lost:
            self._positions.pop(part, None)
            self._p.metrics.lag.labels(str(part)).set(0)

    def _step(self, consumer: PositionedConsumer) -> None:
        records = self._collect(consumer)
        if self._to_check:
            stored = self._p.retrier.call(self._p.stored_offsets, "postgres")
            self._p.view_sync.ensure_current(stored, self._to_check)
            self._to_check = []
        if records:
            self._process(consumer, decode_batch(records, self._p.topic), time.monotonic())
            self._p.hooks.at("between_batches")
        if time.monotonic() - self._lag_at > LAG_EVERY_S:
            self._update_lag(consumer)

    def _collect(self, consumer: PositionedConsumer) -> list[Record]:
        p = self._p
        self._buffer = []
        deadline: float | None = None
        while not p.stopping.is_set() and len(self._buffer) < p.batch_size:
            wait = 0.1 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                break
            want = p.batch_size - len(self._buffer)
            got = p.retrier.call(lambda: consumer.poll(want, wait), "kafka")  # noqa: B023
            mine = consumer.assigned
            self._buffer.extend(r for r in got if r.partition in mine)
            if not self._buffer:
                break
            if deadline is None:
                deadline = time.monotonic() + p.batch_ms / 1000
        return self._buffer

    def _process(self, consumer: PositionedConsumer, batch: Batch, started: float) -> None:
        p = self._p
        if batch.poison:
            p.retrier.call(lambda: p.dlq.publish(batch.poison), "kafka")
            p.metrics.dead_letters.inc(len(batch.poison))
            p.metrics.events.labels("dead_letter").inc(len(batch.poison))
        positions = {part: self._positions.get(part) for part in batch.partitions}
        try:
            done = p.retrier.call(
                lambda: p.writer.commit(
                    batch, positions, p.aggregation_of, lambda: p.hooks.at("inside_txn")
                ),
                "postgres",
                p.writer.reset,
            )
        except Fenced as exc:
            log.warning(
                "batch fenced: another consumer owns a partition", extra={"error": str(exc)}
            )
            p.metrics.fenced.inc()
            self._resync(consumer, batch.partitions)
            return
        self._positions.update(done.ends)
        p.hooks.at("after_commit")
        self._apply_view(done)
        self._record(batch, done, started)

    def _apply_view(self, done: Committed) -> None:
        for part, end in done.ends.items():
            counted = reservations(done.new_events.get(part, []))
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

    def _resync(self, consumer: PositionedConsumer, partitions: list[int]) -> None:
        w = self._p.writer
        found = self._p.retrier.call(lambda: w.positions(partitions), "postgres", w.reset)
        for part, offset in found.items():
            if part in consumer.assigned:
                self._positions[part] = offset
                consumer.seek(part, offset)

    def _update_lag(self, consumer: PositionedConsumer) -> None:
        self._lag_at = time.monotonic()
        ends = consumer.end_offsets(sorted(consumer.assigned), timeout_s=1.0)
        lag = {part: max(0, end - (self._positions.get(part) or 0)) for part, end in ends.items()}
        for part, value in lag.items():
            self._p.metrics.lag.labels(str(part)).set(value)
        self._p.progress.lag(lag)
