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
between `floor` and `ceiling`. Requests beyond it get 429 with Retry-After.

The places are shared fairly between tenants: one tenant may hold at most
`(limit - reserve) / n` of them, `n` being the tenants holding places (itself included) and
`reserve` an eighth of the limit. So a tenant flooding ingest alone gets most of it, but never
the last places: another tenant's request finds one free, and once it holds one the flooder's
share shrinks. A tenant always gets at least one place while the limit has room.
"""

from __future__ import annotations

import time


class ConcurrencyLimit:
    """The adaptive limit on requests in progress, shared fairly between tenants. Not
    thread-safe: one event loop owns it."""

    def __init__(
        self, ceiling: int, target_s: float, floor: int = 4, decrease: float = 0.9
    ) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError("need 1 <= floor <= ceiling")
        self.ceiling, self.floor, self.target_s, self.decrease = ceiling, floor, target_s, decrease
        self.limit = float(ceiling)
        self.active = 0
        self._held: dict[int, int] = {}  # tenant -> places it holds (only tenants holding some)
        self._cut_at = -target_s

    def try_enter(self, tenant: int) -> bool:
        """Take a place for `tenant` if one is free under the limit and the tenant is within
        its share; the caller must `leave` after."""
        limit = int(self.limit)
        held = self._held.get(tenant, 0)
        if self.active >= limit or held >= self.share(tenant):
            return False
        self.active += 1
        self._held[tenant] = held + 1
        return True

    def share(self, tenant: int) -> int:
        """The most places `tenant` may hold now (see the module docstring)."""
        limit = int(self.limit)
        tenants = len(self._held) + (tenant not in self._held)
        return max(1, (limit - (limit + 7) // 8) // tenants)

    def leave(self, tenant: int, seconds: float) -> None:
        """Give back `tenant`'s place, taken `seconds` ago, and adjust the limit to that
        latency."""
        self.active -= 1
        held = self._held[tenant] - 1
        if held:
            self._held[tenant] = held
        else:
            del self._held[tenant]
        if seconds > self.target_s:
            now = time.monotonic()
            if now - self._cut_at >= self.target_s:
                self.limit = max(float(self.floor), self.limit * self.decrease)
                self._cut_at = now
        else:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
