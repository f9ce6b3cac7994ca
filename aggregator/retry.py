"""Outages of Postgres, Redis or Kafka: retry with capped exponential backoff, never skip.

`Retrier.call(fn, dependency)` runs `fn` until it succeeds. While it fails with an outage error
the worker is paused (it reads nothing new) and `/readyz` reports the wait (`Progress.waiting_for`)
and, with lag, the stall. Only a shutdown
request ends the retries, by raising `ShuttingDown`: the work was not done, and whatever was not
committed is read again by the next owner of the partitions.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_never,
    wait_exponential,
)

from aggregator.metrics import AggregatorMetrics
from aggregator.progress import Progress
from meterline import postgres, redis
from meterline.errors import Unavailable
from meterline.kafka.consumer import KafkaFailure

log = logging.getLogger(__name__)
T = TypeVar("T")
OUTAGES = (*postgres.OUTAGES, *redis.OUTAGES, Unavailable, KafkaFailure)


class ShuttingDown(Exception):
    """Raised instead of another retry once shutdown was requested."""


class Retrier:
    def __init__(
        self,
        metrics: AggregatorMetrics,
        stopping: threading.Event,
        max_wait_s: float = 5.0,
        progress: Progress | None = None,
    ) -> None:
        self._metrics = metrics
        self._stopping = stopping
        self._max_wait = max_wait_s
        self._progress = progress

    def call(
        self, fn: Callable[[], T], dependency: str, on_retry: Callable[[], None] | None = None
    ) -> T:
        """`fn()`, retried on outage errors; `on_retry` runs before each new attempt (for
        example to reconnect)."""

        def before_sleep(state: RetryCallState) -> None:
            self._metrics.retries.labels(dependency).inc()
            if self._progress is not None:
                self._progress.waiting_for(dependency)
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "dependency unavailable; retrying",
                extra={
                    "dependency": dependency,
                    "attempt": state.attempt_number,
                    "error": str(exc),
                },
            )
            if self._stopping.is_set():
                raise ShuttingDown(dependency)
            if on_retry is not None:
                with contextlib.suppress(*OUTAGES):
                    on_retry()

        retrying = Retrying(
            retry=retry_if_exception_type(OUTAGES),
            wait=wait_exponential(multiplier=0.1, max=self._max_wait),
            stop=stop_never,
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        result = retrying(fn)
        if self._progress is not None and retrying.statistics.get("attempt_number", 1) > 1:
            self._progress.waiting_for(None)
        return result

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)
