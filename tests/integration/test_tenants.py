"""Tenants and keys: one contract suite run against the memory and the Postgres repository."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg_pool import ConnectionPool

from meterline.auth import Authenticator
from meterline.clock import FakeClock
from meterline.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from meterline.tenants import MemoryTenantRepository, PostgresTenantRepository, TenantRepository


@pytest.fixture(params=["memory", "postgres"])
def repo(request: pytest.FixtureRequest) -> Iterator[TenantRepository]:
    if request.param == "memory":
        yield MemoryTenantRepository()
        return
    conninfo = request.getfixturevalue("pg_conninfo")
    with ConnectionPool(conninfo, min_size=1, max_size=2) as pool:
        yield PostgresTenantRepository(pool)


def test_a_key_authenticates_as_its_tenant_only(repo: TenantRepository) -> None:
    a, b = repo.create_tenant("acme"), repo.create_tenant("globex")
    _, key_a = repo.create_key("acme", ["ingest"])
    _, key_b = repo.create_key("globex", ["read", "admin"])
    pa, pb = repo.authenticate(key_a), repo.authenticate(key_b)
    assert pa is not None and pb is not None
    assert (pa.tenant_id, pa.scopes) == (a.id, {"ingest"})
    assert (pb.tenant_id, pb.scopes) == (b.id, {"read", "admin"})
    assert repo.authenticate(key_a + "x") is None


def test_revoked_keys_stop_authenticating(repo: TenantRepository) -> None:
    repo.create_tenant("acme")
    info, key = repo.create_key("acme", ["ingest"])
    repo.revoke_key(info.id)
    assert repo.authenticate(key) is None
    assert [k.revoked_at is not None for k in repo.list_keys("acme")] == [True]


def test_errors_are_domain_errors(repo: TenantRepository) -> None:
    repo.create_tenant("acme")
    with pytest.raises(Conflict):
        repo.create_tenant("acme")
    with pytest.raises(ValidationFailed):
        repo.create_tenant("Not Valid!")
    with pytest.raises(ValidationFailed):
        repo.create_key("acme", ["write"])
    with pytest.raises(NotFound):
        repo.create_key("nobody", ["ingest"])
    with pytest.raises(NotFound):
        repo.revoke_key("key_missing")


def test_authenticator_caches_and_enforces_scope_and_revocation(repo: TenantRepository) -> None:
    repo.create_tenant("acme")
    info, key = repo.create_key("acme", ["ingest"])
    clock = FakeClock()
    auth = Authenticator(repo, ttl=60, clock=clock)
    assert auth.principal(f"Bearer {key}", "ingest").tenant_name == "acme"
    with pytest.raises(Forbidden):
        auth.principal(f"Bearer {key}", "admin")
    for header in (None, "", "Basic abc", "Bearer ", f"Bearer {key}zz"):
        with pytest.raises(Unauthorized):
            auth.principal(header, "ingest")
    repo.revoke_key(info.id)
    assert auth.principal(f"Bearer {key}", "ingest")  # still cached
    clock.advance(61)
    with pytest.raises(Unauthorized):
        auth.principal(f"Bearer {key}", "ingest")
