"""Per-tenant rate limits: a token bucket per tenant, wrapped around any sink."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from ingest.sinks import Outcome, Sink
from meterline.errors import TooManyRequests
from meterline.events import EncodedEvents
from meterline.tenants import Principal


class TokenBuckets:
    """One bucket per tenant holding up to one second of its rate.

    A request may take more tokens than are left (a 1,000-event batch on a slow tenant): the
    bucket goes into debt, and the tenant waits until it is positive again. So the long-run
    rate never exceeds the configured one, and any batch size is eventually accepted.
    """

    def __init__(
        self,
        default_rate: float,
        rates: Mapping[str, float] | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default = default_rate
        self._rates = dict(rates or {})
        self._now = now
        self._buckets: dict[int, tuple[float, float]] = {}  # tenant → (tokens, at)

    def rate(self, principal: Principal) -> float:
        return self._rates.get(principal.tenant_name, self._default)

    def take(self, principal: Principal, n: int) -> float:
        """Take `n` tokens and return 0, or return the seconds to wait (nothing taken)."""
        rate = self.rate(principal)
        now = self._now()
        tokens, at = self._buckets.get(principal.tenant_id, (rate, now))
        tokens = min(rate, tokens + (now - at) * rate)
        if tokens <= 0:
            self._buckets[principal.tenant_id] = (tokens, now)
            return -tokens / rate + 1 / rate
        self._buckets[principal.tenant_id] = (tokens - n, now)
        return 0.0


class RateLimitedSink(Sink):
    """Refuses with 429 and Retry-After while the tenant is over its events per second."""

    def __init__(self, inner: Sink, buckets: TokenBuckets) -> None:
        self._inner, self._buckets = inner, buckets

    async def submit(self, principal: Principal, events: EncodedEvents) -> Outcome:
        wait = self._buckets.take(principal, len(events))
        if wait > 0:
            raise TooManyRequests(
                f"over this tenant's rate of {self._buckets.rate(principal):g} events/s",
                max(1, math.ceil(wait)),
            )
        return await self._inner.submit(principal, events)
