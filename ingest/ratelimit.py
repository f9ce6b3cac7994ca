"""Per-tenant rate limits: token buckets shared by every ingest process, wrapped around any sink.

A bucket holds up to one second of the tenant's rate (`METERLINE_INGEST_TENANT_RATE`, or its
override). A request may take more tokens than are left: the bucket goes into debt, and the
tenant waits until it is positive again, so the long-run rate never exceeds the configured one
and any batch size is eventually accepted.

The buckets live in Redis (`meterline.redis.buckets`), so the rate holds across replicas. A
process takes tokens from there in slices (`lease_s` of the rate, or the request's size if
larger) and serves requests from its slice, so Redis is asked about once per slice, not per
request; tokens left in a slice that the process does not use within `SLICE_HOLD_S` are
dropped, so a tenant spread over many replicas may get slightly less than its rate, never more
(every token was taken from the shared bucket, and a process holds one slice at a time). The
slice is kept a second rather than `lease_s`: a tenant sending a few events at a time would
otherwise ask Redis every `lease_s`, a round trip on its request's path that waits behind
whatever else Redis and ingest's loop are doing (a flood's dedupe scripts, say). While Redis
does not answer, each process limits the tenant alone at the full rate (logged once), as ingest
did before the buckets were shared: a Redis outage must not refuse events.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from ingest.sinks import Outcome, Sink
from meterline import tokenbucket
from meterline.errors import TooManyRequests
from meterline.events import EncodedEvents
from meterline.redis.buckets import BucketStoreDown
from meterline.tenants import Principal

log = logging.getLogger("ingest.ratelimit")

SLICE_HOLD_S = 1.0
"""How long a process may serve requests from a slice it took (the bucket's own depth)."""


class BucketStore(Protocol):
    async def lease(self, tenant_id: int, rate: float, want: int) -> float:
        """Take `want` tokens and return 0, or the seconds to wait (nothing taken); raises
        `BucketStoreDown` when the store does not answer."""
        ...


class MemoryBucketStore:
    """One process's buckets (a second of the rate, debt allowed): `meterline.tokenbucket`, the
    arithmetic the Redis script also follows, on this process's clock."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._buckets: dict[int, tuple[float, float]] = {}  # tenant → (tokens, at)

    async def lease(self, tenant_id: int, rate: float, want: int) -> float:
        return self.take(tenant_id, rate, want)

    def take(self, tenant_id: int, rate: float, want: int) -> float:
        now = self._now()
        tokens, at = self._buckets.get(tenant_id, (rate, now))
        tokens, at = tokenbucket.refill(tokens, at, now, rate, capacity=rate)
        tokens, wait = tokenbucket.take(tokens, want, rate, debt=True)
        if wait == 0:
            self._buckets[tenant_id] = (tokens, at)
        return wait


class TokenBuckets:
    """Each tenant's rate, with tokens taken from `store` in slices of `lease_s` of the rate
    (0: each request asks the store; right for a store in this process)."""

    def __init__(
        self,
        default_rate: float,
        rates: Mapping[str, float] | None = None,
        store: BucketStore | None = None,
        lease_s: float = 0.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default, self._rates = default_rate, dict(rates or {})
        self._store = store or MemoryBucketStore(now)
        self._fallback = MemoryBucketStore(now)
        self._lease_s, self._now = lease_s, now
        self._slices: dict[int, tuple[int, float]] = {}  # tenant → (tokens left, until)
        self._store_down = False

    def rate(self, principal: Principal) -> float:
        return self._rates.get(principal.tenant_name, self._default)

    async def take(self, principal: Principal, n: int) -> float:
        """Take `n` tokens and return 0, or return the seconds to wait (nothing taken)."""
        tenant, now = principal.tenant_id, self._now()
        left, until = self._slices.get(tenant, (0, 0.0))
        if left >= n and now < until:
            self._slices[tenant] = (left - n, until)
            return 0.0
        rate = self.rate(principal)
        want = max(n, math.ceil(rate * self._lease_s))
        wait = await self._lease(tenant, rate, want)
        if wait == 0 and want > n:
            self._slices[tenant] = (want - n, now + SLICE_HOLD_S)
        return wait

    async def _lease(self, tenant: int, rate: float, want: int) -> float:
        try:
            wait = await self._store.lease(tenant, rate, want)
        except BucketStoreDown as exc:
            if not self._store_down:
                log.warning(
                    "rate limits are per process while Redis is away", extra={"error": str(exc)}
                )
                self._store_down = True
            return self._fallback.take(tenant, rate, want)
        self._store_down = False
        return wait


class RateLimitedSink(Sink):
    """Refuses with 429 and Retry-After while the tenant is over its events per second."""

    def __init__(self, inner: Sink, buckets: TokenBuckets) -> None:
        self._inner, self._buckets = inner, buckets

    async def submit(self, principal: Principal, events: EncodedEvents) -> Outcome:
        wait = await self._buckets.take(principal, len(events))
        if wait > 0:
            raise TooManyRequests(
                f"over this tenant's rate of {self._buckets.rate(principal):g} events/s",
                max(1, math.ceil(wait)),
            )
        return await self._inner.submit(principal, events)
