"""How many POST /v1/events requests ingest works on at once: a limit that adapts to latency.

A fixed limit sized for small requests lets a few hundred large batches in at once when ingest
is overloaded; they then share the CPU, every one of them answers in seconds, and the requests
it should refuse wait in line behind them, so clients time out instead of being told to retry.
`ConcurrencyLimit` keeps the work in progress to what ingest answers within `target_s`
(additive increase, multiplicative decrease, as TCP does with its window): each request
answered within the target raises the limit by 1/limit (so by one per limit's worth of
requests); a slower one lowers it by `decrease`, at most once per `target_s` (as TCP cuts its
window once per round trip, however many packets of it were lost: the requests in progress when
ingest fell behind all answer late, and the first of them is signal enough). The limit stays
between `floor` and `ceiling`. Requests beyond it get 429 with Retry-After before their body is
read.
"""

from __future__ import annotations

import time


class ConcurrencyLimit:
    """The adaptive limit on requests in progress. Not thread-safe: one event loop owns it."""

    def __init__(
        self, ceiling: int, target_s: float, floor: int = 4, decrease: float = 0.9
    ) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError("need 1 <= floor <= ceiling")
        self.ceiling, self.floor, self.target_s, self.decrease = ceiling, floor, target_s, decrease
        self.limit = float(ceiling)
        self.active = 0
        self._cut_at = -target_s

    def try_enter(self) -> bool:
        """Take a place if one is free under the limit; the caller must `leave` after."""
        if self.active >= int(self.limit):
            return False
        self.active += 1
        return True

    def leave(self, seconds: float) -> None:
        """Give back a place, taken `seconds` ago, and adjust the limit to that latency."""
        self.active -= 1
        if seconds > self.target_s:
            now = time.monotonic()
            if now - self._cut_at >= self.target_s:
                self.limit = max(float(self.floor), self.limit * self.decrease)
                self._cut_at = now
        else:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
