"""A client-side rate limiter that keeps request rates below Stripe's.

Stripe allows 1,000 meter-event calls/s in live mode (test mode is lower); the limiter is set
below that so 429s stay rare. `TokenBucket` is thread-safe; its arithmetic is
`meterline.tokenbucket`, shared with ingest's per-tenant buckets.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable

from meterline import tokenbucket


class RateLimiter(abc.ABC):
    @abc.abstractmethod
    def acquire(self) -> None:
        """Block until one more request may be made."""


class Unlimited(RateLimiter):
    def acquire(self) -> None:
        return None


class TokenBucket(RateLimiter):
    """`rate` requests per second on average, bursts of at most `burst`; thread-safe."""

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self._rate = rate
        self._burst = float(burst or max(1, int(rate / 10)))
        self._tokens = self._burst
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                self._tokens, self._last = tokenbucket.refill(
                    self._tokens, self._last, self._clock(), self._rate, self._burst
                )
                self._tokens, wait = tokenbucket.take(self._tokens, 1, self._rate)
                if wait == 0:
                    return
            self._sleep(wait)
