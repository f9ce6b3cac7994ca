"""Expensive reads on a lane of their own, so that they can never delay entitlement checks.

A usage series can cover 10,000 windows; many of them at once used to take every thread of the
default executor and every connection of the shared pool, and stall every other tenant's checks
(figures: bench/HISTORY.md, "security probes"). `ReadLane` runs such reads (the query and the
building of the answer's bytes) on `workers` threads of its own, with connections of their own
(`wiring.build` gives the series query a pool of `workers` connections), holds at most
`per_tenant` of one tenant's reads at a time and `capacity` in all, and answers 429 with
Retry-After beyond either: a tenant that floods gets its share, the others theirs, and the
checks keep their threads and connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from meterline.errors import TooManyRequests

T = TypeVar("T")


class ReadLane:
    """Runs reads on its own threads, bounded per tenant and in all (see the module docstring).
    Owned by one event loop."""

    def __init__(self, workers: int = 2, per_tenant: int = 1, capacity: int = 32) -> None:
        self.workers, self.per_tenant, self.capacity = workers, per_tenant, capacity
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="reads")
        self._held: dict[int, int] = {}

    async def run(self, tenant_id: int, read: Callable[[], T]) -> T:
        """`read()` on the lane's threads; TooManyRequests (nothing run) when this tenant holds
        `per_tenant` reads already or the lane holds `capacity`."""
        held = self._held.get(tenant_id, 0)
        if held >= self.per_tenant:
            raise TooManyRequests(f"at most {self.per_tenant} usage queries at a time per tenant")
        if sum(self._held.values()) >= self.capacity:
            raise TooManyRequests("usage queries are at capacity; retry shortly")
        self._held[tenant_id] = held + 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, read)
        finally:
            left = self._held[tenant_id] - 1
            if left:
                self._held[tenant_id] = left
            else:
                del self._held[tenant_id]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
