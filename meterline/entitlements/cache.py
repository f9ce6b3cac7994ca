"""In-process caches of plan data and decisions, invalidated on change.

`CustomerCache` keeps values per (tenant, customer) with a TTL; `invalidate(tenant, customer)`
drops one customer's entries, `invalidate(tenant)` a whole tenant's (a catalog change). This
process invalidates on every change it makes (webhook, admin call, consume); the TTL bounds how
long a change made by another process can go unseen.

Two uses in the service: plan data (catalog, subscription, grants; TTL ~30 s) and decisions of
plain checks (TTL ~1 s, so a hot check costs no Redis round trip; a consume invalidates its
customer at once, and consume itself never reads this cache).
"""

from __future__ import annotations

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
    ) -> None:
        self._ttl = ttl
        self._max = max_customers
        self._clock = clock
        self._data: dict[int, dict[str, dict[Hashable, tuple[float, V]]]] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: int, customer: str, key: Hashable) -> V | None:
        entry = self._data.get(tenant_id, {}).get(customer, {}).get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def put(self, tenant_id: int, customer: str, key: Hashable, value: V) -> None:
        if self._ttl <= 0:
            return
        expires = self._clock() + self._ttl
        with self._lock:
            customers = self._data.setdefault(tenant_id, {})
            if len(customers) >= self._max:
                customers.clear()
            customers.setdefault(customer, {})[key] = (expires, value)

    def get_or_load(self, tenant_id: int, customer: str, key: Hashable, load: Callable[[], V]) -> V:
        found = self.get(tenant_id, customer, key)
        if found is None:
            found = load()
            self.put(tenant_id, customer, key, found)
        return found

    def invalidate(self, tenant_id: int, customer: str | None = None) -> None:
        """Forget one customer's entries, or the whole tenant's when `customer` is None."""
        with self._lock:
            if customer is None:
                self._data.pop(tenant_id, None)
            else:
                self._data.get(tenant_id, {}).pop(customer, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
