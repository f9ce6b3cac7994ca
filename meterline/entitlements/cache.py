"""In-process caches of plan data and decisions, invalidated on change.

`CustomerCache` keeps values per (tenant, customer) with a TTL; `invalidate(tenant, customer)`
drops one customer's entries, `invalidate(tenant)` a whole tenant's (a catalog change). This
process invalidates on every change it makes (webhook, admin call, consume) and tells the other
replicas (`invalidation.py`); the TTL bounds how long a change goes unseen when that fails, and
`cap_ttl` shortens it while a replica cannot hear the others.

Two uses in the service: plan data (catalog, subscription, grants; TTL ~30 s) and decisions of
plain checks (TTL ~1 s, so a hot check costs no Redis round trip; a consume invalidates its
customer at once, and consume itself never reads this cache).

Each entry lives between `ttl * (1 - jitter)` and `ttl` seconds (uniformly), so entries made
together (a warm-up, a burst of new customers) do not all expire, and get re-read, together;
the TTL stays the bound on staleness. A load that was running while its key was invalidated is
returned but not kept (`invalidate` bumps a generation that `put_if_current` checks), so a
decision read before a change cannot be cached after it.

Not a `meterline.ttlmap.TtlMap`: entries nest per tenant and customer so that one invalidation
drops a customer's or a tenant's at once, and generations guard loads against invalidations.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class CustomerCache(Generic[V]):
    """Values keyed by (tenant, customer, key) with a TTL; `ttl <= 0` disables caching."""

    def __init__(
        self,
        ttl: float,
        max_customers: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        jitter: float = 0.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter is a fraction of the TTL, in [0, 1)")
        self._ttl = ttl
        self._max = max_customers
        self._clock = clock
        self._jitter = jitter
        self._rng = rng
        self._data: dict[int, dict[str, dict[Hashable, tuple[float, V]]]] = {}
        self._lock = threading.Lock()
        self._generation = 0
        self._cap: float | None = None

    @property
    def generation(self) -> int:
        """Bumped by every `invalidate` and `clear`; pass it to `put_if_current`."""
        return self._generation

    def get(self, tenant_id: int, customer: str, key: Hashable) -> V | None:
        found = self.lookup(tenant_id, customer, key)
        return None if found is None else found[0]

    def lookup(self, tenant_id: int, customer: str, key: Hashable) -> tuple[V, float] | None:
        """(value, seconds it has left) of a live entry, else None."""
        entry = self._data.get(tenant_id, {}).get(customer, {}).get(key)
        if entry is None:
            return None
        left = entry[0] - self._clock()
        return None if left <= 0 else (entry[1], left)

    def put(self, tenant_id: int, customer: str, key: Hashable, value: V) -> None:
        self.put_if_current(tenant_id, customer, key, value, self._generation)

    def put_if_current(
        self, tenant_id: int, customer: str, key: Hashable, value: V, generation: int
    ) -> None:
        """Keep `value` unless something was invalidated since `generation` was read (the
        value may predate that change)."""
        ttl = self._ttl if self._cap is None else min(self._ttl, self._cap)
        if ttl <= 0:
            return
        expires = self._clock() + ttl * (1 - self._jitter * self._rng())
        with self._lock:
            if generation != self._generation:
                return
            customers = self._data.setdefault(tenant_id, {})
            if len(customers) >= self._max:
                customers.clear()
            customers.setdefault(customer, {})[key] = (expires, value)

    def get_or_load(self, tenant_id: int, customer: str, key: Hashable, load: Callable[[], V]) -> V:
        found = self.get(tenant_id, customer, key)
        return self.load(tenant_id, customer, key, load) if found is None else found

    def load(self, tenant_id: int, customer: str, key: Hashable, load: Callable[[], V]) -> V:
        """`load()`, kept unless an invalidation happened while it ran."""
        generation = self._generation
        value = load()
        self.put_if_current(tenant_id, customer, key, value, generation)
        return value

    def invalidate(self, tenant_id: int, customer: str | None = None) -> None:
        """Forget one customer's entries, or the whole tenant's when `customer` is None."""
        with self._lock:
            self._generation += 1
            if customer is None:
                self._data.pop(tenant_id, None)
            else:
                self._data.get(tenant_id, {}).pop(customer, None)

    def cap_ttl(self, seconds: float | None) -> None:
        """Keep new entries at most `seconds` (None: the TTL again); entries already held
        keep their expiry (clear them too when they must go)."""
        self._cap = seconds

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._data.clear()
