"""The view fixtures: each view with its archive, in memory and in Redis (the fixtures')."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from meterline.clock import FakeClock
from meterline.usage import MemoryUsageQuery
from meterline.view import MemoryUsageView, RedisUsageView, SyncedView
from meterline.view.model import MINUTE_MS
from tests.view.support import T0, Rig, RigFactory


@pytest.fixture(params=["memory", "redis"])
def make_rig(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[RigFactory]:
    if request.param == "memory":

        def fresh_memory() -> Rig:
            view = MemoryUsageView(clock=clock)
            return Rig(view, MemoryUsageQuery(), view.flush)

        yield fresh_memory
        return
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)

    def fresh() -> Rig:
        client.flushdb()
        archive = MemoryUsageQuery()
        view = RedisUsageView(client, f"t{uuid.uuid4().hex[:6]}", clock=clock, archive=archive)
        token = view.begin_rebuild(30)
        assert token is not None and view.finish_rebuild(token, {})
        return Rig(view, archive, client.flushdb)

    yield fresh
    client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 30 * MINUTE_MS)


@pytest.fixture
def rig(make_rig: RigFactory) -> Rig:
    return make_rig()


@pytest.fixture
def view(rig: Rig) -> SyncedView:
    return rig.view
