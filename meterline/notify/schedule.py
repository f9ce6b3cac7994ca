"""The retry schedule of webhook deliveries: the one place it is defined.

After a failed attempt the next one waits `RETRY_DELAYS_S[n - 1]` seconds (n = attempts made so
far), stretched by up to `jitter` (20 %) at random so endpoints that failed together do not all
come back at once, and never less than the receiver's `Retry-After` (capped at a day). These
are the Standard Webhooks example delays: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h
— ten attempts in all, the last one 75 h 35 min after the first (jitter only adds), so a
delivery is retried for more than three days before it is marked `failed`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

RETRY_DELAYS_S: tuple[float, ...] = (
    5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600,
)  # fmt: skip
MAX_RETRY_AFTER_S = 24 * 3600


def next_delay(
    attempts: int,
    rng: random.Random,
    delays: Sequence[float] = RETRY_DELAYS_S,
    jitter: float = 0.2,
    retry_after: float | None = None,
) -> float | None:
    """Seconds to wait after the `attempts`-th failed attempt, or None when retries are over."""
    if attempts < 1 or attempts > len(delays):
        return None
    delay = delays[attempts - 1] * (1 + jitter * rng.random())
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
    return delay


def total_span(delays: Sequence[float] = RETRY_DELAYS_S) -> float:
    """Seconds between the first and the last attempt without jitter."""
    return float(sum(delays))
