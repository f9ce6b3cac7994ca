"""One contract suite for the dedupe stores (in memory and in real Redis 6.2), and the wrappers."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis

from ingest.sinks import DedupingSink, MemorySink, Outcome
from meterline.clock import FakeClock
from meterline.dedupe import (
    BoundedDeduper,
    CoalescingDeduper,
    Deduper,
    DurableIdsDeduper,
    MemoryDeduper,
    MemoryHeldIds,
    RedisDeduper,
)
from meterline.events import EncodedEvents, UsageEvent
from meterline.redis import connect_async
from meterline.tenants import Principal
from meterline_devstack.process import free_port


def _deduper(kind: str, request: pytest.FixtureRequest, window: float) -> Deduper:
    if kind == "memory":
        return MemoryDeduper(window)
    url = request.getfixturevalue("redis_url")
    redis_deduper = RedisDeduper(connect_async(url), "t", window)
    return CoalescingDeduper(redis_deduper) if kind == "coalesced" else redis_deduper


def _fresh_miss(kind: str) -> bool | None:
    """A Redis store's answer for an id it does not hold during its first window (it cannot
    tell a new tenant from a lost one: `None`); the memory store never loses anything."""
    return False if kind == "memory" else None


@pytest.mark.parametrize("kind", ["memory", "redis", "coalesced"])
def test_marked_ids_are_seen_per_tenant(kind: str, request: pytest.FixtureRequest) -> None:
    async def scenario() -> None:
        d, miss = _deduper(kind, request, 60), _fresh_miss(kind)
        assert await d.seen(1, ["a", "b"]) == [miss, miss]
        await d.mark(1, ["a"])
        assert await d.seen(1, ["a", "b", "a"]) == [True, miss, True]
        assert await d.seen(2, ["a"]) == [miss]
        assert await d.seen(1, []) == []
        assert await d.ping()
        await d.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["memory", "redis", "coalesced"])
def test_ids_are_forgotten_after_the_window(kind: str, request: pytest.FixtureRequest) -> None:
    async def scenario() -> None:
        d = _deduper(kind, request, 0.2)
        await d.mark(1, [f"id-{i}" for i in range(500)])
        assert all(await d.seen(1, [f"id-{i}" for i in range(500)]))
        await asyncio.sleep(0.35)
        assert not any(await d.seen(1, ["id-0", "id-499"]))
        await d.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("kind", ["memory", "redis", "coalesced"])
def test_ids_are_remembered_through_the_window(kind: str, request: pytest.FixtureRequest) -> None:
    """Redis files ids in buckets of an eighth of the window: one marked late in a bucket is
    still seen until the window has passed, not only until its bucket does."""

    window = 2.0

    async def scenario() -> None:
        d = _deduper(kind, request, window)
        marked = {}
        for i in range(8):
            await d.mark(1, [f"late-{i}"])
            marked[f"late-{i}"] = time.monotonic()
            await asyncio.sleep(window / 10)
        ids = list(marked)
        seen = dict(zip(ids, await d.seen(1, ids), strict=True))
        # Every id still inside the window when it was checked (all of them unless the machine
        # stalled for more than half the window) must be seen.
        inside = [i for i in ids if time.monotonic() - marked[i] < window * 0.95]
        assert inside and all(seen[i] for i in inside), (seen, inside)
        await d.close()

    asyncio.run(scenario())


def test_memory_deduper_follows_its_clock() -> None:
    clock = FakeClock()
    d = MemoryDeduper(10, clock)
    asyncio.run(d.mark(1, ["x"]))
    clock.advance(9)
    assert asyncio.run(d.seen(1, ["x"])) == [True]
    clock.advance(2)
    assert asyncio.run(d.seen(1, ["x"])) == [False]


def test_concurrent_calls_are_merged_into_few_store_calls() -> None:
    class Counting(MemoryDeduper):
        calls = 0

        async def seen(self, tenant_id: int, ids: object) -> list[bool]:
            Counting.calls += 1
            await asyncio.sleep(0.01)
            return await super().seen(tenant_id, ids)  # type: ignore[arg-type]

    async def scenario() -> None:
        inner = Counting()
        await inner.mark(1, ["b"])
        d = CoalescingDeduper(inner)
        answers = await asyncio.gather(*(d.seen(1, [f"a{i}", "b"]) for i in range(50)))
        assert answers == [[False, True]] * 50
        assert Counting.calls <= 2

    asyncio.run(scenario())


class _Stuck(MemoryDeduper):
    """A store that never answers `seen` until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def seen(self, tenant_id: int, ids: object) -> list[bool]:
        await self.release.wait()
        return await super().seen(tenant_id, ids)  # type: ignore[arg-type]


def test_a_bounded_store_call_times_out() -> None:
    async def scenario() -> None:
        d = BoundedDeduper(_Stuck(), 0.05)
        with pytest.raises(TimeoutError):
            await d.seen(1, ["a"])
        await d.mark(1, ["a"])  # fast calls pass through

    asyncio.run(scenario())


def test_a_stuck_store_lets_every_waiting_request_through() -> None:
    """Coalesced callers behind a stuck call all get through (as new) within twice the bound."""
    errors: list[BaseException] = []
    memory = MemorySink()
    sink = DedupingSink(
        memory, CoalescingDeduper(BoundedDeduper(_Stuck(), 0.05)), on_error=errors.append
    )
    principal = Principal(1, "acme", "key_1", frozenset({"ingest"}))

    async def scenario() -> list[Outcome]:
        batches = [
            EncodedEvents.of([UsageEvent(1, f"e{i}", "c", "api_calls", 1.0, 1, 1)])
            for i in range(20)
        ]
        async with asyncio.timeout(5):  # a guard against hanging, far above 2 x 0.05 s
            return await asyncio.gather(*(sink.submit(principal, b) for b in batches))

    assert asyncio.run(scenario()) == [Outcome(1, 0)] * 20
    assert len(memory.events) == 20
    assert errors and all(isinstance(e, TimeoutError) for e in errors)


@pytest.mark.parametrize("kind", ["memory", "redis", "coalesced"])
def test_exchange_marks_before_it_checks(kind: str, request: pytest.FixtureRequest) -> None:
    async def scenario() -> None:
        d, miss = _deduper(kind, request, 60), _fresh_miss(kind)
        assert await d.exchange(1, ["a", "b"], ["b", "c", "a"]) == [True, miss, True]
        assert await d.exchange(1, [], ["c", "b"]) == [miss, True]
        assert await d.exchange(1, ["c"], []) == []
        assert await d.seen(1, ["c"]) == [True]
        assert await d.exchange(2, [], ["a"]) == [miss]
        await d.close()

    asyncio.run(scenario())


def test_concurrent_checks_and_marks_share_store_calls() -> None:
    class Counting(MemoryDeduper):
        calls = 0

        async def exchange(self, tenant_id: int, mark_ids: object, seen_ids: object) -> list[bool]:
            Counting.calls += 1
            await asyncio.sleep(0.01)
            return await super().exchange(tenant_id, mark_ids, seen_ids)  # type: ignore[arg-type]

    async def scenario() -> None:
        d = CoalescingDeduper(Counting())
        await d.mark(1, ["first"])
        Counting.calls = 0
        marks = [d.mark(1, [f"m{i}"]) for i in range(20)]
        checks = [d.seen(1, [f"m{i}", "first", "new"]) for i in range(20)]
        answers = await asyncio.gather(*marks, *checks)
        assert answers[20:] == [[True, True, False]] * 20  # marks go first in a merged call
        assert Counting.calls == 1

    asyncio.run(scenario())


def test_the_redis_script_survives_a_script_flush(redis_url: str) -> None:
    async def scenario() -> None:
        d = RedisDeduper(connect_async(redis_url), f"rf{uuid.uuid4().hex[:6]}", 60)
        await d.mark(1, ["a"])
        redis.Redis.from_url(redis_url).script_flush()
        assert await d.seen(1, ["a", "b"]) == [True, None]  # a new store: not yet intact
        await d.close()

    asyncio.run(scenario())


def test_an_unreachable_redis_fails_the_call_and_the_ping() -> None:
    async def scenario() -> None:
        d = RedisDeduper(connect_async(f"redis://127.0.0.1:{free_port()}/0"), "x", 60)
        with pytest.raises(redis.RedisError):
            await d.seen(1, ["a"])
        assert not await d.ping()

    asyncio.run(scenario())


def test_a_call_cut_off_mid_reply_never_hands_its_reply_to_the_next(redis_url: str) -> None:
    """A timed-out call's connection is closed: its late reply cannot answer the next call."""

    async def scenario() -> None:
        d = RedisDeduper(connect_async(redis_url), f"cx{uuid.uuid4().hex[:6]}", 60)
        await d.mark(1, ["a"])
        redis.Redis.from_url(redis_url).client_pause(300)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(d.seen(1, ["a"]), 0.05)  # answered "1" after the pause
        assert await d.seen(1, ["b"]) == [None]
        assert await d.seen(1, ["a", "b"]) == [True, None]
        await d.close()

    asyncio.run(scenario())


def test_a_redis_store_says_when_it_may_have_lost_ids(redis_url: str) -> None:
    """Misses are `None` from a loss (or a tenant's first call) until a window has passed or a
    restore is declared; a declaration made before another loss is refused."""

    async def scenario() -> None:
        d = RedisDeduper(connect_async(redis_url), f"lo{uuid.uuid4().hex[:6]}", 60)
        await d.mark(1, ["a"])
        assert await d.seen(1, ["a", "b"]) == [True, None]
        since = await d.intact_since(1)
        assert since is not None and await d.declare_intact(1, since)
        assert await d.intact_since(1) is None
        assert await d.seen(1, ["a", "b"]) == [True, False]
        redis.Redis.from_url(redis_url).flushall()
        assert await d.seen(1, ["a", "b"]) == [None, None]
        stale = await d.intact_since(1)
        redis.Redis.from_url(redis_url).flushall()
        assert await d.seen(1, ["b"]) == [None]
        assert stale is not None and not await d.declare_intact(1, stale)
        await d.close()
        short = RedisDeduper(connect_async(redis_url), f"lw{uuid.uuid4().hex[:6]}", 0.2)
        assert await short.seen(1, ["b"]) == [None]
        await asyncio.sleep(0.25)
        assert await short.seen(1, ["b"]) == [False]
        await short.close()

    asyncio.run(scenario())


def test_the_durable_record_answers_what_a_lost_store_forgot(redis_url: str) -> None:
    """Over a flushed Redis store: ids the record holds are seen, others are not, and the
    store is restored in the background (then intact, answering alone)."""

    async def scenario() -> None:
        store = RedisDeduper(connect_async(redis_url), f"du{uuid.uuid4().hex[:6]}", 60)
        record = MemoryHeldIds()
        record.ids[1] = {"granted-1", "granted-2"}
        d = DurableIdsDeduper(CoalescingDeduper(store), store, record)
        assert await d.seen(1, ["granted-1", "new"]) == [True, False]
        for _ in range(100):
            if await store.intact_since(1) is None:
                break
            await asyncio.sleep(0.02)
        assert await store.seen(1, ["granted-1", "granted-2", "new"]) == [True, True, False]
        record.ids[1] = set()  # the store alone answers now
        assert await d.seen(1, ["granted-2", "new"]) == [True, False]
        await d.close()

    asyncio.run(scenario())
