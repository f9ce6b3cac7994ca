"""The touched-customers feed, one contract suite on both twins: the memory view marking a
`MemoryTouched`, and the Redis view's APPLY script marking the set `RedisTouched` reads."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import redis

from meterline.catalog.model import Aggregation
from meterline.clock import FakeClock
from meterline.view import Delta, Gate, MemoryUsageView, RedisUsageView, SyncedView
from meterline.view.model import MINUTE_MS
from meterline.view.touched import MemoryTouched, RedisTouched, Touch, TouchedCustomers
from tests.view.support import T0


@dataclass
class Feed:
    view: SyncedView
    touched: TouchedCustomers

    def batch(self, *customers: str, tenant: int = 1) -> None:
        self.view.apply([delta(c, tenant) for c in customers], [])

    def names(self) -> list[tuple[int, str]]:
        return [(t.tenant_id, t.customer) for t in self.touched.take(100)]


def delta(customer: str, tenant: int = 1, value: int = 1) -> Delta:
    return Delta(tenant, customer, "calls", Aggregation.SUM, T0, Decimal(value), 1, T0 + 1)


@pytest.fixture(params=["memory", "redis"])
def make_feed(request: pytest.FixtureRequest) -> Iterator[Callable[[bool], Feed]]:
    clock = FakeClock(T0 + 30 * MINUTE_MS)
    if request.param == "memory":

        def memory(on: bool = True) -> Feed:
            touched = MemoryTouched()
            return Feed(MemoryUsageView(clock, touched=touched if on else None), touched)

        yield memory
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))

    def in_redis(on: bool = True) -> Feed:
        prefix = f"t{uuid.uuid4().hex[:6]}"
        view = RedisUsageView(client, prefix, clock=clock, touched=on)
        token = view.begin_rebuild(30)
        assert token is not None and view.finish_rebuild(token, {})
        return Feed(view, RedisTouched(client, prefix))

    yield in_redis
    client.close()


@pytest.fixture
def feed(make_feed: Callable[[bool], Feed]) -> Feed:
    return make_feed(True)


def test_a_batch_marks_each_of_its_customers_once(feed: Feed) -> None:
    feed.view.apply([delta("a"), delta("a", value=2), delta("b/x"), delta("a", tenant=2)], [])
    assert feed.names() == [(1, "a"), (1, "b/x"), (2, "a")]
    assert feed.touched.backlog() == 3


def test_a_batch_of_many_customers_marks_all_of_them_with_one_stamp(feed: Feed) -> None:
    many = [f"c{n}" for n in range(1_203)]  # Redis adds them 500 at a time: 3 calls
    feed.batch(*many, *many[:10])
    taken = feed.touched.take(2_000)
    assert sorted(t.customer for t in taken) == sorted(many)
    assert {t.stamp for t in taken} == {feed.touched.stamp()}


def test_oldest_first_and_a_later_touch_moves_a_customer_last(feed: Feed) -> None:
    feed.batch("a")
    feed.batch("b")
    feed.batch("a")
    assert feed.names() == [(1, "b"), (1, "a")]


def test_done_keeps_a_customer_touched_again_after_take(feed: Feed) -> None:
    feed.batch("a", "b")
    taken = feed.touched.take(10)
    feed.batch("b")
    assert feed.touched.done(taken) == 1
    assert feed.names() == [(1, "b")]
    assert feed.touched.done(feed.touched.take(10)) == 1
    assert feed.touched.backlog() == 0


def test_take_up_to_a_stamp_leaves_later_touches(feed: Feed) -> None:
    feed.batch("a")
    up_to = feed.touched.stamp()
    feed.batch("b")
    assert [t.customer for t in feed.touched.take(10, up_to)] == ["a"]
    assert [t.customer for t in feed.touched.take(1)] == ["a"]


def test_a_gated_batch_marks_once_and_a_skipped_one_not_again(feed: Feed) -> None:
    gate = Gate("s0", None, 5)
    feed.view.apply_gated(gate, [delta("a")], [])
    feed.touched.done(feed.touched.take(10))
    assert feed.view.apply_gated(gate, [delta("a")], []).value == "skipped"
    assert feed.touched.backlog() == 0


def test_a_rebuild_marks_every_customer_it_loads(feed: Feed) -> None:
    token = feed.view.begin_rebuild(30)
    assert token is not None
    feed.view.load(token, [delta("a"), delta("b")])
    assert feed.view.finish_rebuild(token, {})
    assert feed.names() == [(1, "a"), (1, "b")]


def test_nothing_is_marked_when_the_feed_is_off(make_feed: Callable[[bool], Feed]) -> None:
    off = make_feed(False)
    off.batch("a")
    assert off.touched.backlog() == 0 and off.touched.take(10) == []


def test_done_of_nothing_and_an_unknown_touch(feed: Feed) -> None:
    assert feed.touched.done([]) == 0
    assert feed.touched.done([Touch(1, "nobody", 1)]) == 0
