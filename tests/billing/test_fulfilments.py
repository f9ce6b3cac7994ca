"""One contract suite for the memory and Postgres fulfilment records: once per session."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from meterline.billing import (
    Fulfilment,
    MemoryFulfilmentRepository,
    PostgresFulfilmentRepository,
)
from meterline.entitlements import (
    MemoryCustomerRepository,
    MemoryGrantRepository,
    NewGrant,
    PostgresCustomerRepository,
    PostgresGrantRepository,
)
from meterline.errors import NotFound
from meterline.postgres import open_pool
from meterline.tenants import PostgresTenantRepository


@pytest.fixture(params=["memory", "postgres"])
def repos(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.param == "memory":
        customers = MemoryCustomerRepository()
        grants = MemoryGrantRepository(customers)
        customers.ensure(1, "c")
        yield {"tenant": 1, "grants": grants, "fulfilments": MemoryFulfilmentRepository(grants)}
        return
    with open_pool(request.getfixturevalue("pg_conninfo"), max_size=8) as pool:
        tenant = PostgresTenantRepository(pool).create_tenant("acme").id
        PostgresCustomerRepository(pool).ensure(tenant, "c")
        yield {
            "tenant": tenant,
            "grants": PostgresGrantRepository(pool),
            "fulfilments": PostgresFulfilmentRepository(pool),
        }


def _pack(tenant: int, session: str = "cs_1") -> tuple[Fulfilment, list[NewGrant]]:
    record = Fulfilment(session, tenant, "c", "credit_pack", "k10")
    grants = [NewGrant("c", "api_calls", "credit", 10000.0), NewGrant("c", "tokens", "credit", 5)]
    return record, grants


def test_a_session_is_fulfilled_once(repos: dict[str, Any]) -> None:
    t, store = repos["tenant"], repos["fulfilments"]
    record, grants = _pack(t)
    assert store.fulfil(record, grants) is True
    assert store.fulfil(record, grants) is False
    stored = store.get("cs_1")
    given = repos["grants"].list(t, "c")
    assert [g.amount for g in given] == [10000, 5]
    assert stored is not None and stored.grant_ids == tuple(g.id for g in given)
    assert (stored.kind, stored.item, stored.customer) == ("credit_pack", "k10", "c")
    assert store.get("cs_2") is None


def test_concurrent_deliveries_fulfil_once(repos: dict[str, Any]) -> None:
    t, store = repos["tenant"], repos["fulfilments"]
    record, grants = _pack(t)
    outcomes: list[bool] = []
    workers = [
        threading.Thread(target=lambda: outcomes.append(store.fulfil(record, grants)))
        for _ in range(6)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(outcomes) == [False] * 5 + [True]
    assert len(repos["grants"].list(t, "c")) == 2


def test_a_failed_grant_leaves_no_record(repos: dict[str, Any]) -> None:
    t, store = repos["tenant"], repos["fulfilments"]
    record = Fulfilment("cs_9", t, "nobody", "credit_pack", "k10")
    with pytest.raises(NotFound):
        store.fulfil(record, [NewGrant("nobody", "api_calls", "credit", 1.0)])
    assert store.get("cs_9") is None
