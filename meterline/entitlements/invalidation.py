"""Cache invalidations shared by every entitlements replica.

Each replica caches plan data (catalog, subscription, grants; ~30 s) and the decisions of plain
checks (~1 s). A change made through one replica — a consume, a Stripe webhook, an admin call —
must reach the caches of all of them at once (within 100 ms): the replica that made it applies
it to its own caches and publishes a `Change` once the change is durable; every other replica
drops the matching entries when it hears it (`RedisChangeFeed`: one Redis pub/sub channel,
one message per change, a few hundred microseconds from publish to delivery; changes told at
once are sent together in one round trip by a sender thread).

Pub/sub remembers nothing: a replica that is not subscribed (starting, or its connection
dropped) misses what is published meanwhile. So while it is not subscribed its caches keep
entries at most `fallback_ttl` (1 s by default: a change made elsewhere is then seen within a
second, as without caching), and they are emptied each time it subscribes again, which covers
whatever it missed. Redis down means consume refuses anyway (its reservation lives there).

`MemoryChangeHub` is the in-process twin (several services in one process, in tests), with the
same contract: tests/entitlements/test_invalidation.py runs one suite against both.

One worker per process, on purpose; scale out with replicas. Caches (auth, plan data, decisions)
are per process; a change made through any replica (consume, webhook, admin call) is applied to
its own caches and published on the Redis channel `<prefix>:entitlements:changes` once durable,
and every replica drops the matching entries when it hears it
(`meterline/entitlements/invalidation.py`): measured within 100 ms between two processes
(`tests/entitlements/test_replicas.py`). Pub/sub keeps nothing for a replica that is not
listening, so while its subscription is down (start-up, Redis restarting, a dropped connection)
its caches keep entries at most `FALLBACK_CACHE_TTL` (1 s) and are emptied each time it
subscribes again (every 0.5 s it retries). Keys (`AUTH_CACHE_TTL`) are not broadcast: a revoked
key stops working within 30 s (plus the fast path's 1 s). On 2 cores a second worker does not
pay: at 5,000 checks/s one process needs well under one core (a cached check ~65-80 µs of CPU; a
decision that reads Redis a few hundred, once per hot key per TTL), and every worker would keep
and re-decide its own copy of each hot decision, doubling that costly part.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from meterline.redis.channel import ChannelListener, publish_all

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    """What changed: one customer's data (`customer`), or a whole tenant's (`None`: a catalog).
    `plans` False: usage only (a consume), so only decisions are stale, not plan data."""

    tenant_id: int
    customer: str | None
    plans: bool = True


class Caches(Protocol):
    """What a feed drives: the service's caches (`EntitlementService`)."""

    def forget(self, change: Change) -> None: ...

    def clear(self) -> None: ...

    def cap_ttl(self, seconds: float | None) -> None: ...


class ChangeFeed(Protocol):
    def publish(self, change: Change) -> None:
        """Tell the other replicas (never raises: a change that cannot be told is logged)."""

    def listen(self, caches: Caches) -> None:
        """Apply what the other replicas tell to `caches`, from now until `close`."""

    def close(self) -> None: ...


class LocalFeed:
    """One replica only: nothing to tell, nothing to hear."""

    def publish(self, change: Change) -> None:
        pass

    def listen(self, caches: Caches) -> None:
        pass

    def close(self) -> None:
        pass


def encode(sender: str, change: Change) -> bytes:
    return orjson.dumps([sender, change.tenant_id, change.customer, change.plans])


def decode(data: bytes) -> tuple[str, Change]:
    sender, tenant_id, customer, plans = orjson.loads(data)
    return str(sender), Change(int(tenant_id), customer, bool(plans))


class _Listening:
    """What both feeds do with what they hear: forget it, and the fallback around a gap."""

    def __init__(self, fallback_ttl: float) -> None:
        self.id = uuid.uuid4().hex
        self._fallback = fallback_ttl
        self._caches: Caches | None = None

    def listen(self, caches: Caches) -> None:
        self._caches = caches
        caches.cap_ttl(self._fallback)  # until the subscription is confirmed

    def heard(self, data: bytes) -> None:
        sender, change = decode(data)
        if sender != self.id and self._caches is not None:
            self._caches.forget(change)

    def joined(self) -> None:
        if self._caches is not None:
            self._caches.clear()  # whatever was missed before is forgotten too
            self._caches.cap_ttl(None)

    def lost(self) -> None:
        log.warning("entitlement changes are not heard: caches keep entries %.1f s", self._fallback)
        if self._caches is not None:
            self._caches.clear()
            self._caches.cap_ttl(self._fallback)


class RedisChangeFeed(_Listening):
    """Changes on the Redis pub/sub channel `channel` (`<prefix>:entitlements:changes`).

    `publish` never waits for Redis: a sender thread takes every change queued so far (equal
    ones once) and publishes them in one round trip (one message each, as before), at once when
    idle. So a consume, which tells a change on every grant, pays no round trip for it, and
    under load many changes share one."""

    def __init__(self, client: Any, url: str, channel: str, fallback_ttl: float = 1.0) -> None:
        super().__init__(fallback_ttl)
        self._client, self._url, self._channel = client, url, channel
        self._listener: ChannelListener | None = None
        self._queued: dict[Change, None] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._sender = threading.Thread(target=self._send, name="change-feed", daemon=True)
        self._sender.start()

    def publish(self, change: Change) -> None:
        with self._lock:
            self._queued[change] = None
        self._wake.set()

    def _send(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._queued = list(self._queued), {}
            if batch:
                publish_all(self._client, self._channel, [encode(self.id, c) for c in batch])
            with self._lock:
                if self._closed and not self._queued:
                    return

    def listen(self, caches: Caches) -> None:
        super().listen(caches)
        self._listener = ChannelListener(
            self._url, self._channel, self.heard, self.joined, self.lost
        ).start()

    def close(self) -> None:
        """Publish what is queued, then stop hearing."""
        self._closed = True
        self._wake.set()
        self._sender.join(5)
        if self._listener is not None:
            self._listener.close()


class MemoryChangeHub:
    """Feeds of one process that hear each other; `drop()` and `rejoin()` play a lost and a
    restored connection of all of them."""

    def __init__(self) -> None:
        self._feeds: list[MemoryChangeFeed] = []
        self._lock = threading.Lock()
        self.up = True

    def feed(self, fallback_ttl: float = 1.0) -> MemoryChangeFeed:
        made = MemoryChangeFeed(self, fallback_ttl)
        with self._lock:
            self._feeds.append(made)
        return made

    def send(self, data: bytes) -> None:
        if self.up:
            for feed in list(self._feeds):
                feed.heard(data)

    def drop(self) -> None:
        self.up = False
        for feed in list(self._feeds):
            feed.lost()

    def rejoin(self) -> None:
        self.up = True
        for feed in list(self._feeds):
            feed.joined()


class MemoryChangeFeed(_Listening):
    def __init__(self, hub: MemoryChangeHub, fallback_ttl: float) -> None:
        super().__init__(fallback_ttl)
        self._hub = hub

    def publish(self, change: Change) -> None:
        self._hub.send(encode(self.id, change))

    def listen(self, caches: Caches) -> None:
        super().listen(caches)
        if self._hub.up:
            self.joined()

    def close(self) -> None:
        pass
