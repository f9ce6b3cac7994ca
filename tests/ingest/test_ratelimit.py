"""Per-tenant rate limits shared through Redis: the Redis bucket and the in-memory one answer
alike (one contract suite on both), two ingest processes sharing Redis together never pass the
tenant's rate, and a Redis outage falls back to per-process limits instead of refusing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio

from ingest.ratelimit import SLICE_HOLD_S, BucketStore, MemoryBucketStore, TokenBuckets
from meterline.redis import connect_async
from meterline.redis.buckets import RedisBucketStore
from meterline.tenants import Principal

ACME = Principal(1, "acme", "k", frozenset({"ingest"}))


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[BucketStore]:
    if request.param == "memory":
        yield MemoryBucketStore()
        return
    url = request.getfixturevalue("redis_url")
    yield RedisBucketStore(connect_async(url), "t")


def test_a_full_bucket_lets_a_second_through_then_asks_to_wait(store: BucketStore) -> None:
    async def scenario() -> None:
        assert await store.lease(7, 100.0, 60) == 0
        assert await store.lease(7, 100.0, 60) == 0  # into debt: 100 - 120 = -20
        wait = await store.lease(7, 100.0, 1)
        assert 0.15 < wait <= 0.21  # (1 - -20) / 100, less what refilled meanwhile
        assert await store.lease(8, 100.0, 100) == 0  # another tenant is untouched

    asyncio.run(scenario())


def test_the_bucket_refills_at_its_rate(store: BucketStore) -> None:
    async def scenario() -> None:
        assert await store.lease(9, 50.0, 60) == 0  # 50 - 60 = -10
        assert await store.lease(9, 50.0, 1) > 0
        await asyncio.sleep(0.25)  # 12.5 tokens back
        assert await store.lease(9, 50.0, 1) == 0

    asyncio.run(scenario())


def test_two_processes_sharing_redis_stay_within_the_tenants_rate(redis_url: str) -> None:
    """Two `TokenBuckets` with their own slices, one Redis: over ~1.5 s at a rate of 1,000
    events/s they accept at most the first second's bucket plus the refill, together, however
    the requests alternate between them."""
    rate, seconds = 1000.0, 1.5

    async def scenario() -> int:
        client = connect_async(redis_url)
        replicas = [
            TokenBuckets(rate, store=RedisBucketStore(client, "shared"), lease_s=0.05)
            for _ in range(2)
        ]
        accepted, start = 0, time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            if await replicas[i % 2].take(ACME, 10) == 0:
                accepted += 10
            i += 1
            await asyncio.sleep(0)
        await client.aclose()
        return accepted

    accepted = asyncio.run(scenario())
    # At most one bucket (1,000) plus 1.5 s of refill, plus one slice per replica of slack.
    assert 1500 <= accepted <= rate + rate * seconds + 2 * 50 + 20


class CountingStore(MemoryBucketStore):
    def __init__(self, now: Callable[[], float]) -> None:
        super().__init__(now)
        self.leases = 0

    async def lease(self, tenant_id: int, rate: float, want: int) -> float:
        self.leases += 1
        return await super().lease(tenant_id, rate, want)


def test_a_tenant_sending_little_asks_the_store_about_once_a_second() -> None:
    """One event every 60 ms for 3 s, against slices of 50 ms of a rate of 200,000/s: each
    slice serves every request of the second after it was taken (asked per `lease_s`, the
    store was asked for each request, a round trip on its path)."""
    clock = [0.0]
    store = CountingStore(lambda: clock[0])
    buckets = TokenBuckets(200_000.0, store=store, lease_s=0.05, now=lambda: clock[0])

    async def scenario() -> None:
        for _ in range(50):
            assert await buckets.take(ACME, 1) == 0
            clock[0] += 0.06

    asyncio.run(scenario())
    assert SLICE_HOLD_S == 1.0
    assert store.leases == 3


def test_each_process_limits_alone_while_redis_is_away() -> None:
    async def scenario() -> None:
        gone = redis.asyncio.Redis(port=1, socket_connect_timeout=0.2)
        buckets = TokenBuckets(10.0, store=RedisBucketStore(gone, "x"))
        assert await buckets.take(ACME, 150) == 0  # served, not refused
        assert await buckets.take(ACME, 1) > 0  # and still limited, in this process
        await gone.aclose()

    asyncio.run(scenario())


def test_a_bucket_in_debt_outlives_its_debt(redis_url: str) -> None:
    """A slow tenant's large batch leaves its bucket in debt for longer than a minute: the key
    must not expire before the debt is repaid, or the tenant would start over full."""

    async def scenario() -> tuple[float, int]:
        client = connect_async(redis_url)
        store = RedisBucketStore(client, "debt")
        assert await store.lease(11, 5.0, 1000) == 0  # 5 - 1000: 199 s of debt
        ttl = await client.pttl("debt:rl:{11}")
        wait = await store.lease(11, 5.0, 1)
        await client.aclose()
        return wait, ttl

    wait, ttl = asyncio.run(scenario())
    assert wait > 190
    assert ttl > 199_000
