"""Concurrent consumers against the real Redis view at the ragged end of a period."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import redis

from meterline.catalog.model import Aggregation
from meterline.clock import from_ms, to_ms
from meterline.entitlements.periods import add_months
from meterline.usage import MemoryUsageQuery
from meterline.view import Delta, RedisUsageView, ReservationKey
from meterline.view.model import HOUR_MS, MINUTE_MS, floor_to

CONSUMERS = 200
LIMIT = 57


class SpreadClock:
    """Each reading a random instant of [lo, hi): consumers spread over the last minutes."""

    def __init__(self, lo: int, hi: int) -> None:
        self._lo, self._hi = lo, hi
        self._rng = random.Random(37)
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._rng.randrange(self._lo, self._hi)

    def now(self) -> datetime:
        return from_ms(self.now_ms())


def test_200_consumers_in_the_last_minutes_of_a_period_ending_at_37(redis_url: str) -> None:
    now = to_ms(datetime.now(UTC))
    end = floor_to(now, HOUR_MS) + HOUR_MS + 37 * MINUTE_MS + 20_000
    start = to_ms(add_months(from_ms(end), -1))
    archive = MemoryUsageQuery()
    clock = SpreadClock(end - 10 * MINUTE_MS, end)
    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=64, timeout=30)
    view = RedisUsageView(redis.Redis(connection_pool=pool), "cc", clock=clock, archive=archive)
    token = view.begin_rebuild(30)
    assert token is not None and view.finish_rebuild(token, {})
    barrier = threading.Barrier(CONSUMERS)

    def consume(i: int) -> tuple[str, int] | None:
        barrier.wait()
        r = view.reserve(1, "c", "m", f"e{i}", 1, LIMIT, start, end, clock.now_ms())
        return (f"e{i}", r.at_ms) if r.granted else None

    with ThreadPoolExecutor(CONSUMERS) as threads:
        granted = [g for g in threads.map(consume, range(CONSUMERS)) if g is not None]
    assert len(granted) == LIMIT
    for event_id, at in granted:
        d = Delta(1, "c", "m", Aggregation.SUM, floor_to(at, MINUTE_MS), 1.0, 1, at)
        view.apply([d], [ReservationKey(1, "c", "m", event_id)])
    assert view.usage(1, "c", "m", Aggregation.SUM, start, end) == LIMIT
    assert not view.reserve(1, "c", "m", "late", 1, LIMIT, start, end, clock.now_ms()).granted
