"""`reserve_many` with an `IdGuard` (ingest's dedupe store): the same contract in memory and in
Redis, where the guard runs inside each reservation's script (one round trip for both)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis

from meterline.clock import FakeClock
from meterline.dedupe import BlockingRedisDeduper
from meterline.entitlements.ids import MemoryIngestedIds
from meterline.entitlements.postgres import LedgerIngestedIds
from meterline.usage import MemoryUsageQuery
from meterline.view import IdGuard, IdHeld, RedisUsageView, Reservation, ReserveAsk, ViewNotReady
from meterline.view.model import DAY_MS, HELD
from tests.view.support import T0, Rig

Mark = Callable[[int, str], None]


@pytest.fixture
def guarded(rig: Rig, request: pytest.FixtureRequest) -> Iterator[tuple[IdGuard, Mark]]:
    """The guard of the rig's kind, and how to mark an id in it (as ingest does)."""
    if not hasattr(rig.view, "_r"):
        ids = MemoryIngestedIds()
        yield ids.guard(), lambda t, e: ids.mark(t, e)()
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    deduper = BlockingRedisDeduper(client, "g", window_s=60)
    pool: Any = None  # asked only for ids the ledger does not hold: never used
    yield LedgerIngestedIds(pool, deduper).guard(), lambda t, e: deduper.mark(t, [e])
    client.close()


def _ask(event_id: str, amount: int, limit: int, tenant: int = 1) -> ReserveAsk:
    return ReserveAsk(
        tenant, "c1", "m", event_id, Decimal(amount), Decimal(limit), T0, T0 + DAY_MS, T0
    )


def _outcomes(held: list[object]) -> list[object]:
    return [(r.granted, r.used) if isinstance(r, Reservation) else r for r in held]


def test_a_held_id_reserves_nothing_and_the_others_decide_in_order(
    rig: Rig, guarded: tuple[IdGuard, Mark]
) -> None:
    guard, mark = guarded
    for _ in range(2):  # the first call may load the guarded script (Redis), the second uses it
        rig.flush()
        mark(1, "taken")
        token = rig.view.begin_rebuild(30)
        assert token is not None and rig.view.finish_rebuild(token, {})
        asks = [_ask("a", 3, 5), _ask("taken", 2, 5), _ask("b", 2, 5), _ask("c", 1, 5)]
        held = rig.view.reserve_many(asks, guard)
        assert _outcomes(held) == [(True, 0), HELD, (True, 3), (False, 5)]
    assert (
        rig.view.reserve(1, "c1", "m", "d", Decimal(0), Decimal(5), T0, T0 + DAY_MS, T0).used == 5
    )


def test_the_guard_is_per_tenant_and_asked_before_readiness(
    rig: Rig, guarded: tuple[IdGuard, Mark]
) -> None:
    guard, mark = guarded
    mark(2, "x")
    held = rig.view.reserve_many([_ask("x", 1, 5), _ask("x", 1, 5, tenant=2)], guard)
    assert _outcomes(held) == [(True, 0), HELD]
    rig.flush()
    mark(2, "x")
    held = rig.view.reserve_many([_ask("y", 1, 5, tenant=2), _ask("x", 1, 5, tenant=2)], guard)
    assert [type(r) for r in held] == [ViewNotReady, IdHeld]


def test_a_redis_view_asks_the_guard_inside_its_script(
    redis_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(redis_url)
    view = RedisUsageView(client, "gv", clock=clock, archive=MemoryUsageQuery())
    token = view.begin_rebuild(30)
    assert token is not None and view.finish_rebuild(token, {})
    deduper = BlockingRedisDeduper(client, "gs", window_s=60)
    pool: Any = None
    guard = LedgerIngestedIds(pool, deduper).guard()
    deduper.mark(1, ["taken"])
    view.reserve_many([_ask("load", 0, 5)], guard)  # loads the guarded script

    def not_asked(ids: object) -> list[bool]:
        raise AssertionError("held_many asked: a second round trip")

    monkeypatch.setattr(guard, "held_many", not_asked)
    held = view.reserve_many([_ask("taken", 1, 5), _ask("a", 1, 5)], guard)
    assert _outcomes(held) == [HELD, (True, 0)]
    client.close()
