"""The consume loop: collect a micro-batch, dead-letter the poison, commit, update the view.

    consumer thread:  collect (<= batch_size records, or batch_ms after the first once the
                        committer is free) -> decode -> prepare (first copies, COPY text)
                        -> check each partition starts at its position
                        -> hand the batch to the committer (waits for the one before)
    committer thread: ONE Postgres transaction (ledger, rollups, offsets,
                        dead letters into the outbox)                         [inside_txn]
                        -> dead letters published, then dropped from the outbox
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

Positions belong to the topic's incarnation (`WorkerParts.incarnation`), learnt at start-up, on
every assignment and resync, and again whenever a batch does not start at its partition's
position. A new incarnation (the topic recreated, a memory-only broker restarted) is read from
its start. In the same incarnation, a batch that does not start at its position, or a stored
position beyond the log's end, stops that partition (paused, `/readyz` fails, counted, logged)
until an operator moves the stored position (`meterline offsets reset`), which the worker sees
within `LAG_EVERY_S`.

After each commit the same positions are committed to Kafka's consumer group, for lag monitors
and autoscalers only (`visible_offsets.py`): the worker never reads them back.

The view's readiness is checked at start-up, at assignment, by every batch's apply, and every
`VIEW_EVERY_S` while the committer is free (one Redis call, on the committer thread so it never
races a batch): a view flushed in a quiet system is rebuilt without waiting for a batch, which
would never come while RESERVE refuses every consume (`ViewSync.keep_current`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from aggregator.batch import AggregationOf, Batch, decode_batch, reservations
from aggregator.decoding import Events
from aggregator.faults import Hooks
from aggregator.metrics import AggregatorMetrics
from aggregator.postgres.ledger import Committed, Fenced, LedgerWriter, Prepared, prepare
from aggregator.progress import Progress
from aggregator.retry import Retrier, ShuttingDown
from aggregator.viewsync import ViewSync
from aggregator.visible_offsets import VisibleOffsets
from meterline.kafka.consumer import PositionedConsumer, Positions, Record, Revoked
from meterline.kafka.dlq import DeadLetterPublisher

log = logging.getLogger(__name__)
ConsumerFactory = Callable[[Positions, Revoked], PositionedConsumer]
LAG_EVERY_S = 2.0
VIEW_EVERY_S = 1.0
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
    incarnation: Callable[[], str | None] = lambda: None
    visible: VisibleOffsets = field(default_factory=VisibleOffsets)


@dataclass(frozen=True)
class Halt:
    """A partition stopped on a position mismatch: the stored position it was stopped at
    (moving it resumes the partition), and why."""

    stored: int | None
    why: str


class Worker:
    def __init__(self, parts: WorkerParts) -> None:
        self._p = parts
        self._positions: dict[int, int | None] = {}
        self._buffer: list[Record] = []
        self._to_check: list[int] = []
        self._to_resync: set[int] = set()
        self._lag_at = self._view_at = 0.0
        self._consumer: PositionedConsumer | None = None
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="committer")
        self._pending: Future[None] | None = None
        self._halted: dict[int, Halt] = {}

    def run(self) -> None:
        """Consume until `stopping` is set; the batches in hand are finished first (drain)."""
        p = self._p
        try:
            p.writer.incarnation = p.retrier.call(p.incarnation, "kafka")
            self._publish_letters()
            stored = p.retrier.call(p.stored_offsets, "postgres")
            p.view_sync.ensure_current(stored, [])
            self._consumer = p.consumer_factory(self._on_assign, self._on_revoke)
            while not p.stopping.is_set():
                self._step(self._consumer)
            self._wait_for_committer()
            p.visible.flush(self._consumer)
        except ShuttingDown:
            log.info("shutting down during an outage; uncommitted work is read again later")
        finally:
            p.progress.running = False
            self._committer.shutdown(wait=True, cancel_futures=True)
            if self._consumer is not None:
                self._consumer.close()

    def _on_assign(self, partitions: list[int]) -> dict[int, int | None]:
        self._wait_for_committer()
        w, was = self._p.writer, self._p.writer.incarnation
        w.incarnation = self._p.retrier.call(self._p.incarnation, "kafka")
        if was is not None and w.incarnation != was:
            log.warning("the topic has a new incarnation", extra={"was": was, "now": w.incarnation})
            self._p.metrics.incarnations.inc()
        found = self._stored(partitions)
        self._positions.update(found)
        self._to_check.extend(partitions)
        self._check_ends(found)
        return found

    def _stored(self, partitions: list[int]) -> dict[int, int | None]:
        w = self._p.writer
        return self._p.retrier.call(lambda: w.positions(partitions), "postgres", w.reset)

    def _check_ends(self, found: dict[int, int | None]) -> None:
        """Stop each partition whose stored position is beyond its log's end."""
        consumer, placed = self._consumer, {p: o for p, o in found.items() if o}
        if consumer is None or not placed:
            return
        past = self._p.retrier.call(lambda: consumer.beyond_end(placed), "kafka")
        for part, end in past.items():
            why = f"stored position {placed[part]} is beyond the log end {end}"
            self._halt(consumer, part, placed[part], why, "beyond_log_end")

    def _on_revoke(self, partitions: list[int]) -> None:
        self._wait_for_committer()  # finish the batch in flight while these are still ours
        if self._consumer is not None:
            self._p.visible.flush(self._consumer, partitions)
        lost = set(partitions)
        self._buffer = [m for m in self._buffer if m.partition() not in lost]
        self._to_resync -= lost
        for part in lost:
            self._positions.pop(part, None)
            self._p.metrics.lag.labels(str(part)).set(0)
        if lost & self._halted.keys():
            self._halted = {p: h for p, h in self._halted.items() if p not in lost}
            self._report_halted()

    def _step(self, consumer: PositionedConsumer) -> None:
        if self._to_resync:
            self._wait_for_committer()
            self._resync(consumer)
        records = self._collect(consumer)
        if self._to_check:
            self._wait_for_committer()
            stored = self._p.retrier.call(self._p.stored_offsets, "postgres")
            inc = self._p.writer.incarnation
            self._p.view_sync.ensure_current(stored, self._to_check, inc)
            self._to_check = []
        if records:
            prepared = prepare(decode_batch(records, self._p.topic))
            self._submit(consumer, prepared, time.monotonic())
        self._p.visible.flush(consumer)
        if time.monotonic() - self._lag_at > LAG_EVERY_S:
            self._update_lag(consumer)
            if self._halted:
                self._check_resolved(consumer)
            else:
                self._learn_incarnation(consumer)
        if time.monotonic() - self._view_at > VIEW_EVERY_S and not self._committing():
            self._check_view()

    def _check_view(self) -> None:
        """Hand the committer a check of the view against the committed positions of the
        partitions being read (it rebuilds a view that is empty or differs). Not while a
        resync is due: the positions are then not what Postgres holds."""
        self._view_at = time.monotonic()
        if self._to_resync:
            return
        self._wait_for_committer()
        at = {p: o for p, o in self._positions.items() if o is not None and p not in self._halted}
        p = self._p
        check = p.view_sync.keep_current
        self._pending = self._committer.submit(check, at, p.writer.incarnation, p.stored_offsets)

    def _submit(self, consumer: PositionedConsumer, prepared: Prepared, started: float) -> None:
        """Hand a batch to the committer once the batch before it is done. A batch of a
        partition waiting to be read again is not committed (it would be refused), nor one
        that does not start where its partitions' positions are."""
        batch = prepared.batch
        self._wait_for_committer()
        if self._to_resync.intersection(batch.partitions):
            self._to_resync.update(batch.partitions)
            return
        at = self._positions
        moved = {
            p: start
            for p in batch.partitions
            if (start := at.get(p)) is not None and batch.starts[p] != start
        }
        if moved:
            self._on_moved(consumer, batch, moved)
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

    def _collect(self, consumer: PositionedConsumer) -> list[Record]:
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
            if self._halted:
                mine = mine - self._halted.keys()
            if not mine.issuperset(map(Record.partition, got)):
                got = [m for m in got if m.partition() in mine]
            self._buffer.extend(got)
            if not self._buffer:
                break
            if deadline is None:
                deadline = time.monotonic() + p.batch_ms / 1000
        return self._buffer

    def _on_moved(self, consumer: PositionedConsumer, batch: Batch, moved: dict[int, int]) -> None:
        """Some partitions of `batch` do not start at their positions: a new incarnation of the
        topic is read from its start; otherwise those partitions stop and the batch's other
        partitions are read again from their positions."""
        if self._learn_incarnation(consumer):
            return
        for part, at in moved.items():
            why = f"a batch starts at offset {batch.starts[part]}, the stored position is {at}"
            self._halt(consumer, part, at, why, "batch_start")
        self._to_resync.update(set(batch.partitions) - moved.keys())

    def _learn_incarnation(self, consumer: PositionedConsumer) -> bool:
        """Ask the broker for the topic's incarnation; when it changed, read every assigned
        partition from its position in the new one (its start) and return True."""
        p, w = self._p, self._p.writer
        now = p.retrier.call(p.incarnation, "kafka")
        if now == w.incarnation:
            return False
        self._wait_for_committer()
        log.warning(
            "the topic has a new incarnation; reading it from its start",
            extra={"was": w.incarnation, "now": now},
        )
        p.metrics.incarnations.inc()
        w.incarnation = now
        parts = sorted(consumer.assigned)
        found = self._stored(parts)
        for part, offset in found.items():
            self._positions[part] = offset
            self._place(consumer, part, offset)
        self._halted = {}
        self._report_halted()
        self._to_check.extend(parts)
        return True

    def _place(self, consumer: PositionedConsumer, part: int, offset: int | None) -> None:
        if part in self._halted:
            consumer.resume(part, offset)
        else:
            consumer.seek(part, offset)

    def _halt(
        self, consumer: PositionedConsumer, part: int, stored: int | None, why: str, kind: str
    ) -> None:
        """Stop reading `part` until its stored position changes."""
        consumer.pause(part)
        self._halted[part] = Halt(stored, why)
        self._p.metrics.position_mismatches.labels(kind).inc()
        self._report_halted()
        log.error(
            "partition stopped: its stored position and the log disagree; resolve it with "
            "`meterline offsets reset`",
            extra={"partition": part, "reason": why, "incarnation": self._p.writer.incarnation},
        )

    def _report_halted(self) -> None:
        self._p.progress.halted({p: h.why for p, h in self._halted.items()})
        self._p.metrics.halted.set(len(self._halted))

    def _check_resolved(self, consumer: PositionedConsumer) -> None:
        """Resume each stopped partition whose stored position an operator has moved."""
        self._wait_for_committer()
        if self._learn_incarnation(consumer):
            return
        found = self._stored(sorted(self._halted))
        moved = {p: o for p, o in found.items() if o != self._halted[p].stored}
        for part, offset in moved.items():
            log.info("partition resumed", extra={"partition": part, "offset": offset})
            self._positions[part] = offset
            consumer.resume(part, offset)
            del self._halted[part]
        if moved:
            self._report_halted()
            self._to_check.extend(moved)
            self._check_ends(moved)

    def _process(self, prepared: Prepared, starts: dict[int, int | None], started: float) -> None:
        """On the committer thread: the transaction, dead letters, the view, the metrics."""
        p, batch = self._p, prepared.batch
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
        p.visible.committed(done.ends)
        if batch.poison:
            p.metrics.events.labels("dead_letter").inc(len(batch.poison))
            self._publish_letters()
        p.hooks.at("after_commit")
        self._apply_view(batch, done)
        self._record(batch, done, started)
        p.hooks.at("between_batches")

    def _publish_letters(self) -> None:
        """Publish the dead letters committed batches recorded, then drop them from the outbox.
        A crash between the two publishes them again (the only way one is sent twice)."""
        p, w = self._p, self._p.writer
        letters = p.retrier.call(w.pending_letters, "postgres", w.reset)
        if not letters:
            return
        p.retrier.call(lambda: p.dlq.publish(letters), "kafka")
        p.retrier.call(lambda: w.forget_letters(letters), "postgres", w.reset)
        p.metrics.dead_letters.inc(len(letters))

    def _apply_view(self, batch: Batch, done: Committed) -> None:
        """Apply each partition's deltas, and drop the pending reservations of every
        consume's event in the batch: new or a copy, its identity is counted now (a copy whose
        id another event took first would otherwise hold its reservation for ever)."""
        for part, end in done.ends.items():
            counted = reservations(batch.events.get(part, _NO_EVENTS))
            deltas = done.deltas.get(part, [])
            previous = done.previous[part]
            self._p.view_sync.apply(part, previous, end, deltas, counted, done.incarnation)

    def _record(self, batch: Batch, done: Committed, started: float) -> None:
        m = self._p.metrics
        counted = sum(len(es) for es in done.new_events.values())
        m.events.labels("counted").inc(counted)
        m.events.labels("duplicate").inc(done.duplicates)
        m.batch_size.observe(batch.records)
        m.batch_seconds.observe(time.monotonic() - started)
        self._p.progress.committed()

    def _resync(self, consumer: PositionedConsumer) -> None:
        """Read the partitions waiting for it again from their offsets in Postgres (every
        assigned one, from its start, when the topic has a new incarnation)."""
        parts = sorted(self._to_resync & consumer.assigned)
        self._to_resync = set()
        if self._learn_incarnation(consumer):
            return
        found = self._stored(parts)
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
