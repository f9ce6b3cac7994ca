"""Retrying a `MeterEventSender`: backoff with jitter, honouring Retry-After.

`RetryingSender` wraps any `MeterEventSender`: on `TransientStripeError` (429, 5xx, network) it
sleeps with exponential backoff and full jitter — never less than Stripe's `Retry-After` — and
resends only the events not yet settled, with the next attempt number (so a fresh
Idempotency-Key; the identifier still prevents double counting). After `max_attempts` it raises
the last error with every settled result in `done`; the caller leaves the unsettled events
pending for the next run.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

from meterline.stripe.meter_events import (
    MeterEvent,
    MeterEventSender,
    SendResult,
    TransientStripeError,
)


class RetryingSender(MeterEventSender):
    """Retries transient failures of the wrapped sender; see the module docstring.

    `on_retry(seconds)` is called before each backoff sleep (for metrics and logs).
    """

    def __init__(
        self,
        inner: MeterEventSender,
        max_attempts: int = 8,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[[float], None] | None = None,
    ) -> None:
        self._inner = inner
        self._max_attempts = max_attempts
        self._base = base_delay
        self._cap = max_delay
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._on_retry = on_retry or (lambda seconds: None)

    def send(self, events: Sequence[MeterEvent], attempt: int = 0) -> list[SendResult]:
        settled: list[SendResult] = []
        remaining = list(events)
        for n in range(self._max_attempts):
            try:
                return settled + self._inner.send(remaining, attempt + n)
            except TransientStripeError as exc:
                settled.extend(exc.done)
                remaining = remaining[len(exc.done) :]
                if n + 1 == self._max_attempts:
                    raise TransientStripeError(str(exc), settled, exc.retry_after) from None
                self._backoff(n, exc.retry_after)
        raise AssertionError("unreachable")

    def cancel(self, event_name: str, identifier: str) -> None:
        for n in range(self._max_attempts):
            try:
                self._inner.cancel(event_name, identifier)
                return
            except TransientStripeError as exc:
                if n + 1 == self._max_attempts:
                    raise
                self._backoff(n, exc.retry_after)

    def delay(self, n: int, retry_after: float | None) -> float:
        """Full jitter over an exponential ceiling, never below Retry-After."""
        ceiling = min(self._cap, self._base * (2**n))
        return max(retry_after or 0.0, self._rng.uniform(0, ceiling))

    def _backoff(self, n: int, retry_after: float | None) -> None:
        seconds = self.delay(n, retry_after)
        self._on_retry(seconds)
        self._sleep(seconds)
