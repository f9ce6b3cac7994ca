"""Bringing a committed batch into the Redis view, rebuilding it when it lost track.

Each partition of the batch is applied with its gate (see `meterline.view.sync`): a batch the
view already holds is skipped, a view that missed a batch or lost its content is rebuilt from
Postgres, and a rebuild by another process is waited for. A partition's stream is keyed by the
topic's incarnation, so a topic that starts again at offset 0 starts a stream of its own. A
watermark ahead of Postgres means an operator moved a position back (`meterline offsets
reset`): the view is rebuilt too, or it would skip what is read again.

Readiness does not wait for a batch: RESERVE refuses while the view is empty or rebuilding, so
in a quiet system after a Redis flush or restart no consume publishes anything and no batch
would ever come to rebuild it. `keep_current` checks it with one Redis call, which the worker
runs on its committer thread about once a second while that thread is free.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from aggregator.metrics import AggregatorMetrics
from aggregator.retry import Retrier
from meterline.view import ApplyOutcome, Delta, Gate, ReservationKey, SyncedView, stream_name

log = logging.getLogger(__name__)


class ViewSync:
    def __init__(
        self,
        view: SyncedView,
        rebuild: Callable[[], object],
        retrier: Retrier,
        metrics: AggregatorMetrics,
        group: str,
        topic: str,
        stopping: threading.Event,
    ) -> None:
        self._view = view
        self._rebuild = rebuild
        self._retrier = retrier
        self._metrics = metrics
        self._group, self._topic = group, topic
        self._stopping = stopping

    def apply(
        self,
        partition: int,
        previous: int | None,
        end: int,
        deltas: Sequence[Delta],
        counted: Sequence[ReservationKey],
        incarnation: str | None = None,
    ) -> None:
        stream = stream_name(self._group, self._topic, partition, incarnation)
        gate = Gate(stream, previous, end)
        while True:
            outcome = self._retrier.call(
                lambda: self._view.apply_gated(gate, deltas, counted), "redis"
            )
            self._metrics.view_applies.labels(outcome.value).inc()
            if outcome in (ApplyOutcome.APPLIED, ApplyOutcome.SKIPPED):
                return
            if outcome is ApplyOutcome.REBUILDING:
                self._stopping.wait(0.05)
                continue
            log.warning("view behind Postgres; rebuilding", extra={"outcome": outcome.value})
            self.rebuild()

    def rebuild(self) -> None:
        self._retrier.call(self._rebuild, "redis")
        self._metrics.rebuilds.inc()

    def keep_current(
        self,
        positions: Mapping[int, int],
        incarnation: str | None,
        stored: Callable[[], dict[str, int]],
    ) -> None:
        """Rebuild if the view is not ready, or if it differs from Postgres on one of
        `positions` (partition -> committed position; a differing watermark is checked against
        Postgres first). Costs one Redis call when the view agrees with `positions`."""
        marks = self._retrier.call(self._view.watermarks, "redis")
        if marks is not None and all(
            marks.get(stream_name(self._group, self._topic, p, incarnation)) == at
            for p, at in positions.items()
        ):
            return
        offsets = self._retrier.call(stored, "postgres")
        self.ensure_current(offsets, list(positions), incarnation)

    def ensure_current(
        self, stored: dict[str, int], partitions: Sequence[int], incarnation: str | None = None
    ) -> None:
        """Rebuild if the view is not ready or differs from Postgres on any of `partitions`."""
        marks = self._retrier.call(self._view.watermarks, "redis")
        streams = [stream_name(self._group, self._topic, p, incarnation) for p in partitions]
        off = [s for s in streams if s in stored and (marks or {}).get(s, -1) != stored[s]]
        if marks is None or off:
            log.info("view not current; rebuilding", extra={"streams": off})
            self.rebuild()
