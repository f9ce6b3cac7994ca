"""The API-key cache: the only one in ingest, so revocations and new keys show within its TTLs."""

from __future__ import annotations

import asyncio

import pytest

from ingest.caches import KeyCache
from meterline.clock import FakeClock
from meterline.errors import Forbidden, Unauthorized
from meterline.tenants import MemoryTenantRepository, Principal, new_key


class CountingRepository(MemoryTenantRepository):
    def __init__(self) -> None:
        super().__init__()
        self.lookups = self.id_reads = 0

    def authenticate(self, key: str) -> Principal | None:
        self.lookups += 1
        return super().authenticate(key)

    def live_key_ids(self) -> set[str]:
        self.id_reads += 1
        return super().live_key_ids()


def unknown_key() -> str:
    """A key of the right form that no repository holds."""
    return new_key()[1]


def test_a_revoked_key_stops_working_once_its_entry_expires() -> None:
    repo, clock = CountingRepository(), FakeClock()
    acme = repo.create_tenant("acme")
    info, key = repo.create_key("acme", ["ingest"])
    cache = KeyCache(repo, "ingest", ttl_s=15, clock=clock)

    async def scenario() -> None:
        assert (await cache.principal(f"Bearer {key}")).tenant_id == acme.id
        repo.revoke_key(info.id)
        clock.advance(14.9)
        assert (await cache.principal(f"Bearer {key}")).tenant_id == acme.id  # still kept
        clock.advance(0.2)  # 15.1 s after the check: nothing below keeps it any longer
        with pytest.raises(Unauthorized):
            await cache.principal(f"Bearer {key}")

    asyncio.run(scenario())
    assert repo.lookups == 2


def test_refusals_are_kept_briefly_and_checked_again_after() -> None:
    repo, clock = CountingRepository(), FakeClock()
    repo.create_tenant("acme")
    _, reader = repo.create_key("acme", ["read"])
    cache = KeyCache(repo, "ingest", ttl_s=15, refusal_ttl_s=5, clock=clock)

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(Unauthorized, match="unknown or revoked"):
                await cache.principal("Bearer mlk_nope")
            with pytest.raises(Forbidden, match="ingest"):
                await cache.principal(f"Bearer {reader}")
            with pytest.raises(Unauthorized, match="missing"):
                await cache.principal(None)
        assert repo.lookups == 1  # only the live key's secret was looked up
        clock.advance(5.1)
        with pytest.raises(Forbidden):
            await cache.principal(f"Bearer {reader}")
        assert repo.lookups == 2

    asyncio.run(scenario())


def test_a_kept_refusal_does_not_grow_its_traceback() -> None:
    cache = KeyCache(MemoryTenantRepository(), "ingest", clock=FakeClock())

    async def depth() -> int:
        try:
            await cache.principal("Bearer mlk_nope")
        except Unauthorized as exc:
            tb, n = exc.__traceback__, 0
            while tb is not None:
                tb, n = tb.tb_next, n + 1
            return n
        raise AssertionError("not refused")

    async def scenario() -> None:
        await depth()
        first = await depth()
        for _ in range(50):
            assert await depth() == first

    asyncio.run(scenario())


def test_a_flood_of_different_bad_keys_costs_one_id_read_a_second() -> None:
    """Refusals are kept per key, so a flood of distinct keys would each cost a lookup of its
    secret: instead malformed keys never reach the repository, and well-formed ones whose id
    is not live cost one read of the live ids per second at most."""
    repo, clock = CountingRepository(), FakeClock()
    repo.create_tenant("acme")
    cache = KeyCache(repo, "ingest", clock=clock)

    async def scenario() -> None:
        for i in range(2000):
            bad = unknown_key() if i % 2 else f"mlk_garbage_{i}"
            with pytest.raises(Unauthorized, match="unknown or revoked"):
                await cache.principal(f"Bearer {bad}")
            clock.advance(0.001)  # 2,000 keys over 2 s
        assert repo.lookups == 0
        assert repo.id_reads <= 3
        _, fresh = repo.create_key("acme", ["ingest"])
        clock.advance(1.0)  # a key created meanwhile works once the ids may be read again
        assert (await cache.principal(f"Bearer {fresh}")).tenant_name == "acme"

    asyncio.run(scenario())
