"""CPU-aware admission: while ingest's event loop is behind, the tenants doing more than their
share of its recent work are refused before their bodies are read; the others are served.

Request places (`concurrency.ConcurrencyLimit`) are shared fairly, but places are not CPU: one
1,000-event batch costs ingest as much as ~50 single events, and ingest runs on one event
loop, so a tenant flooding it with batches keeps the loop busy and every other tenant's request
waits behind its parsing, validation and produce calls however few places it holds. So:

- `LoopLag` measures how late the loop runs a timer due every few milliseconds: the wait any
  request's next step has in front of it. Its recent value (smoothed) is the loop's lag.
- `TenantWork` keeps each tenant's recent work in bytes, decaying with a half-life of
  `HALF_LIFE_S`: a request counts `REQUEST_BYTES` (the fixed cost of a request: its head,
  authentication, the answer, a round trip to Redis and one to the broker, expressed as the
  bytes of batch body that cost as much CPU) plus its body's declared length, whether it is
  served or refused: the work a tenant asks for, so that a refused flood keeps its weight.
- `FairAdmission.admit` refuses a request (429, Retry-After) when its tenant's recent work,
  counting this request, is above an equal share of all tenants' recent work (the total
  divided by the tenants active recently, with a slack of a quarter), and either the loop
  lags more than `target_s`, the tenant already has `OVER_SHARE_PLACES` requests being
  served (bodies in hand: a client slow to send counts for nothing), or it is resting: once
  its requests being served are all answered, a tenant above its share rests
  `OVER_SHARE_REST` times as long as they kept it busy, so with others active it is served
  at most a quarter of the time. `enter` checks the places again once the body is in hand,
  as requests admitted together arrive together. Otherwise the request is served.
  The lag bounds how busy a flood keeps the loop; the place bounds how much of its work
  another tenant's request can find in front of it at each step: one batch's parsing or
  produce call on the loop (a millisecond or more each), one batch's dedupe script in Redis,
  one batch in the producer's queue; the rest bounds how often there is any (the loop may not
  lag at all: a flood's batches cost others their latency mostly through the shared Redis,
  broker and producer queue). A tenant alone is never refused here (its share is
  everything), and a tenant sending little keeps its latency while a flood is cut back.

The check comes once the key is known and before the body is read (from Content-Length), so
a refused request costs ingest no decoding, validation, Redis or broker work (the transport
reads its body and drops it). Deciding reads every active tenant's work, only while the loop
lags, the tenant's places are full or it rests. Not thread-safe: one event loop owns it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

HALF_LIFE_S = 1.0
"""How fast a tenant's recorded work fades: half of it is forgotten each second."""
REQUEST_BYTES = 2_000
"""A request's fixed cost, in bytes of batch body of the same CPU (a single event costs ingest
about as much CPU as ~20 events of a batch, ~70 bytes each)."""
OVER_SHARE_PLACES = 1
"""Requests being served (body in hand, not yet answered) a tenant above its share may have."""
SHARE_SLACK = 1.25
"""A tenant is above its share past 1.25 times an equal share: tenants sending alike, whose
work differs only by when it was recorded, are not refused."""
OVER_SHARE_REST = 3.0
"""A tenant above its share, once its requests being served are all answered, is refused for
this many times as long as they kept it busy: with others active, it is served at most a
quarter of the time."""
ACTIVE_BYTES = 100.0
"""A tenant whose recent work has faded below this is no longer counted as active."""


class LoopLag:
    """How late the running event loop is: a timer due every `interval_s` measures the delay
    in front of each of its runs; `lag` is its exponentially smoothed value (weight `alpha`
    per run). Started on first use from a loop (`ensure_running`), and again from a new loop
    (tests run an app on several); `stop` ends it."""

    def __init__(self, interval_s: float = 0.005, alpha: float = 0.3) -> None:
        self.interval_s, self.alpha = interval_s, alpha
        self.lag = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0

    def ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self.stop()
            self._loop, self.lag = loop, 0.0
            self._schedule(loop, loop.time())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop = None

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self._due = now + self.interval_s
        self._handle = loop.call_at(self._due, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        self.lag += self.alpha * (max(0.0, now - self._due) - self.lag)
        self._schedule(loop, now)


class TenantWork:
    """Each tenant's recent work, decaying with a half-life of `HALF_LIFE_S` (see the module
    docstring); decayed lazily, when a tenant's value is read or added to."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._work: dict[int, tuple[float, float]] = {}  # tenant -> (bytes, as of)
        self._rate = math.log(2) / HALF_LIFE_S

    def add(self, tenant: int, amount: float) -> None:
        now = self._now()
        self._work[tenant] = (self._at(tenant, now) + amount, now)

    def over_share(self, tenant: int, amount: float) -> bool:
        """True when `tenant`'s recent work plus `amount` is above `SHARE_SLACK` times an
        equal share of every tenant's (counting it as active); forgets the tenants no longer
        active."""
        if not self._work.keys() - {tenant}:
            return False  # alone (a single tenant's requests take this path: keep it cheap)
        now = self._now()
        values = {t: self._at(t, now) for t in self._work}
        for t in [t for t, v in values.items() if v < ACTIVE_BYTES]:
            del self._work[t], values[t]
        mine = values.get(tenant, 0.0) + amount
        total = sum(values.values()) + amount
        tenants = len(values) + (tenant not in values)
        return mine * tenants > SHARE_SLACK * total

    def _at(self, tenant: int, now: float) -> float:
        value, at = self._work.get(tenant, (0.0, now))
        return value * math.exp(-self._rate * (now - at))


class FairAdmission:
    """Refuses the tenants above their share of ingest's work while its loop lags more than
    `target_s` (see the module docstring)."""

    def __init__(
        self,
        target_s: float,
        lag: LoopLag | None = None,
        work: TenantWork | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target_s = target_s
        self.lag = lag or LoopLag()
        self.work = work or TenantWork(now)
        self._now = now
        self._serving: dict[int, int] = {}  # tenant -> requests with bodies in hand
        self._busy_since: dict[int, float] = {}  # tenant -> when its requests began being served
        self._rest_until: dict[int, float] = {}  # tenant above its share -> refused until

    def admit(self, tenant: int, declared_bytes: int) -> bool:
        """Whether `tenant`'s request, declaring `declared_bytes` of body, may be read. Its
        cost is recorded either way: a tenant's weight is what it asks of ingest, so a flood
        refused for as long as the loop lags stays the heaviest, rather than fading below the
        tenants being served and being let in again."""
        self.lag.ensure_running()
        cost = REQUEST_BYTES + declared_bytes
        pressed = self.lag.lag > self.target_s or self._full(tenant) or self._resting(tenant)
        refused = pressed and self.work.over_share(tenant, cost)
        self.work.add(tenant, cost)
        return not refused

    def enter(self, tenant: int) -> bool:
        """Whether an admitted request of `tenant`, its body now in hand, may be served; if
        so it counts as being served until the caller calls `leave`."""
        if self._full(tenant) and self.work.over_share(tenant, 0):
            return False
        held = self._serving.get(tenant, 0)
        if not held:
            self._busy_since[tenant] = self._now()
        self._serving[tenant] = held + 1
        return True

    def leave(self, tenant: int) -> None:
        """A request of `tenant` that `enter` let in has been answered."""
        held = self._serving[tenant] - 1
        if held:
            self._serving[tenant] = held
            return
        del self._serving[tenant]
        now = self._now()
        busy = now - self._busy_since.pop(tenant)
        if self.work.over_share(tenant, 0):
            self._rest_until[tenant] = now + OVER_SHARE_REST * busy

    def _resting(self, tenant: int) -> bool:
        until = self._rest_until.get(tenant)
        if until is None:
            return False
        if self._now() < until:
            return True
        del self._rest_until[tenant]
        return False

    def _full(self, tenant: int) -> bool:
        return self._serving.get(tenant, 0) >= OVER_SHARE_PLACES
