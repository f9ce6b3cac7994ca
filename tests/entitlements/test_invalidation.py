"""Cache invalidations between replicas: one contract, run against the Redis pub/sub feed (on a
Redis of its own, stopped and started again to drop the connection) and the in-memory twin."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from meterline.entitlements.cache import CustomerCache
from meterline.entitlements.invalidation import (
    Change,
    ChangeFeed,
    MemoryChangeHub,
    RedisChangeFeed,
)
from meterline.redis import connect
from meterline_devstack.redis import redis_process

FALLBACK = 0.25
CHANNEL = "ml:entitlements:changes"


@dataclass
class RecordingCaches:
    """The service's side of the contract, recorded."""

    forgotten: list[Change] = field(default_factory=list)
    clears: int = 0
    cap: float | None = -1.0

    def forget(self, change: Change) -> None:
        self.forgotten.append(change)

    def clear(self) -> None:
        self.clears += 1

    def cap_ttl(self, seconds: float | None) -> None:
        self.cap = seconds


@dataclass
class Pair:
    """Two replicas' feeds, each with its caches, and the connection between them."""

    a: ChangeFeed
    b: ChangeFeed
    drop: Callable[[], None]
    rejoin: Callable[[], None]
    caches_a: RecordingCaches = field(default_factory=RecordingCaches)
    caches_b: RecordingCaches = field(default_factory=RecordingCaches)


def _memory() -> Iterator[Pair]:
    hub = MemoryChangeHub()
    pair = Pair(hub.feed(FALLBACK), hub.feed(FALLBACK), hub.drop, hub.rejoin)
    yield pair


def _redis(home: Path) -> Iterator[Pair]:
    server, url = redis_process(home)
    server.start(30)
    feeds = [RedisChangeFeed(connect(url), url, CHANNEL, FALLBACK) for _ in "ab"]

    def rejoin() -> None:
        server.start(30)

    try:
        yield Pair(feeds[0], feeds[1], server.stop, rejoin)
    finally:
        for feed in feeds:
            feed.close()
        server.stop()


@pytest.fixture(params=["redis", "memory"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    made = _redis(tmp_path) if request.param == "redis" else _memory()
    p = next(made)
    p.a.listen(p.caches_a)
    p.b.listen(p.caches_b)
    yield p
    for _ in made:
        pass


def _within(check: Callable[[], bool], seconds: float) -> float:
    """How long `check` took to hold (AssertionError after `seconds`)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "not within the time"
        time.sleep(0.002)
    return time.monotonic() - start


def _joined(p: Pair) -> None:
    _within(lambda: p.caches_a.cap is None and p.caches_b.cap is None, 10)


def test_a_change_told_by_one_replica_is_heard_by_the_other_within_100_ms(pair: Pair) -> None:
    p = pair
    _joined(p)
    change = Change(7, "cust_1", plans=False)
    p.a.publish(change)
    _within(lambda: p.caches_b.forgotten == [change], 0.1)
    time.sleep(0.05)
    assert p.caches_a.forgotten == []  # its own change: the teller applied it already
    p.b.publish(Change(7, None))
    _within(lambda: p.caches_a.forgotten == [Change(7, None)], 0.1)


def test_caches_are_short_lived_until_joined_and_while_the_connection_is_lost(pair: Pair) -> None:
    p = pair
    _joined(p)
    clears = p.caches_b.clears
    assert clears >= 1  # joining empties the caches: what came before it is unknown
    p.drop()
    _within(lambda: p.caches_b.cap == FALLBACK, 10)
    assert p.caches_b.clears > clears
    p.a.publish(Change(7, "missed"))  # nobody hears it: the short TTL bounds the staleness
    p.rejoin()
    _within(lambda: p.caches_b.cap is None, 10)
    assert p.caches_b.clears >= clears + 2
    _joined(p)
    change = Change(7, "cust_2")
    p.a.publish(change)
    _within(lambda: change in p.caches_b.forgotten, 0.1)
    assert Change(7, "missed") not in p.caches_b.forgotten


def test_a_reset_connection_is_joined_again_and_its_caches_emptied(tmp_path: Path) -> None:
    server, url = redis_process(tmp_path)
    server.start(30)
    caches = RecordingCaches()
    feed = RedisChangeFeed(connect(url), url, CHANNEL, FALLBACK)
    try:
        feed.listen(caches)
        _within(lambda: caches.cap is None, 10)
        clears = caches.clears
        redis.Redis.from_url(url).client_kill_filter(_type="pubsub")
        _within(lambda: caches.cap == FALLBACK, 10)
        _within(lambda: caches.cap is None, 10)  # subscribed again
        assert caches.clears >= clears + 2  # on the loss, and on joining again
    finally:
        feed.close()
        server.stop()


def test_a_capped_cache_keeps_new_entries_at_most_the_cap() -> None:
    now = [0.0]
    cache: CustomerCache[int] = CustomerCache(30.0, clock=lambda: now[0])
    cache.cap_ttl(1.0)
    cache.put(1, "c", "k", 5)
    now[0] = 1.5
    assert cache.get(1, "c", "k") is None
    cache.cap_ttl(None)
    cache.put(1, "c", "k", 6)
    now[0] = 20.0
    assert cache.get(1, "c", "k") == 6
