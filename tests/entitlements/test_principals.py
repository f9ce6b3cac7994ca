"""RecentPrincipals: a key's principal is reused for its TTL without asking the Authenticator,
fetched (in a worker thread) otherwise; bad keys and revocations are never remembered."""

from __future__ import annotations

import asyncio

import pytest

from entitlements_api.principals import RecentPrincipals
from meterline.auth import Authenticator
from meterline.errors import Forbidden, Unauthorized
from meterline.tenants import MemoryTenantRepository


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def setup() -> tuple[MemoryTenantRepository, Clock, RecentPrincipals, dict[str, str]]:
    """Headers by scope, and "id" the read key's id."""
    tenants = MemoryTenantRepository()
    tenants.create_tenant("acme")
    keys = {s: f"Bearer {tenants.create_key('acme', [s])[1]}" for s in ("read", "ingest")}
    keys["id"] = tenants.list_keys("acme")[0].id
    clock = Clock()
    # the Authenticator's own cache off, so each fetch reads the repository
    recent = RecentPrincipals(Authenticator(tenants, ttl=0, negative_ttl=0), 1.0, clock)
    return tenants, clock, recent, keys


def test_a_fetched_principal_is_reused_for_its_ttl_only() -> None:
    _, clock, recent, keys = setup()
    assert recent.now(keys["read"]) is None
    who = asyncio.run(recent.fetch(keys["read"]))
    assert who.tenant_name == "acme" and recent.now(keys["read"]) == who
    clock.now += 0.99
    assert recent.now(keys["read"]) == who
    clock.now += 0.02
    assert recent.now(keys["read"]) is None


def test_bad_keys_and_keys_without_the_scope_raise_and_are_not_remembered() -> None:
    _, _, recent, keys = setup()
    with pytest.raises(Unauthorized):
        asyncio.run(recent.fetch("Bearer nope"))
    with pytest.raises(Unauthorized):
        asyncio.run(recent.fetch(None))
    with pytest.raises(Forbidden):
        asyncio.run(recent.fetch(keys["ingest"]))
    assert recent.now("Bearer nope") is None and recent.now(keys["ingest"]) is None


def test_a_revoked_key_is_refused_once_its_ttl_is_over() -> None:
    tenants, clock, recent, keys = setup()
    asyncio.run(recent.fetch(keys["read"]))
    tenants.revoke_key(keys["id"])
    assert recent.now(keys["read"]) is not None  # within the TTL: still answered
    clock.now += 1.5
    assert recent.now(keys["read"]) is None
    with pytest.raises(Unauthorized):
        asyncio.run(recent.fetch(keys["read"]))
