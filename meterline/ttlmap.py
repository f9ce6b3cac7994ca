"""`TtlMap`: values kept until they expire, the one way the kernel and services cache lookups.

Each entry is `(expires, value)` in `entries`, a plain dict: a hot lookup reads it directly,
one dict get and one compare (`hit = entries.get(key)`, `hit is not None and hit[0] > now`),
with no call into this class per hit. Writes go through `put`, which sets the expiry (the TTL,
or a TTL of the caller's for this entry, shortened by up to `jitter` of it at random so entries
made together do not all expire together) and keeps at most `max_entries` (when full the map
is emptied at once: O(1) per put, and a flood of distinct keys costs one reload each).

The clock is injectable and sets the unit: `time.monotonic` (seconds, the default) or a
`Clock.now_ms` (milliseconds), the TTL in the same unit. What differs between caches stays in
the caller: negative caching (a refusal kept under a shorter TTL), serving a stale value when a
refresh fails, loading off the event loop, invalidation by generation. Not thread-safe for
writes; a caller shared between threads holds its own lock around `put`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlMap(Generic[K, V]):
    """Values per key, each live until its expiry (`clock()` units)."""

    __slots__ = ("_rng", "clock", "entries", "jitter", "max_entries", "ttl")

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        jitter: float = 0.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter is a fraction of the TTL, in [0, 1)")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.entries: dict[K, tuple[float, V]] = {}
        self.ttl, self.max_entries, self.clock, self.jitter = ttl, max_entries, clock, jitter
        self._rng = rng

    def get(self, key: K) -> V | None:
        """The live value of `key`, else None (the hot paths read `entries` themselves)."""
        hit = self.entries.get(key)
        return None if hit is None or hit[0] <= self.clock() else hit[1]

    def put(self, key: K, value: V, ttl: float | None = None, now: float | None = None) -> None:
        """Keep `value` for `ttl` (default: the map's) from `now` (default: the clock's now),
        less the jitter."""
        ttl = self.ttl if ttl is None else ttl
        if self.jitter:
            ttl *= 1 - self.jitter * self._rng()
        entries = self.entries
        if len(entries) >= self.max_entries and key not in entries:
            entries.clear()
        entries[key] = ((self.clock() if now is None else now) + ttl, value)

    def pop(self, key: K) -> None:
        self.entries.pop(key, None)

    def clear(self) -> None:
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)
