"""What only the Redis view does: parts of a period older than its keys need the archive."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis

from meterline.catalog.model import Aggregation
from meterline.clock import FakeClock, from_ms, to_ms
from meterline.entitlements.periods import add_months
from meterline.view import RedisUsageView, ViewNotReady


def test_a_period_older_than_the_keys_without_an_archive_is_not_answered(redis_url: str) -> None:
    now = to_ms(datetime.now(UTC))
    view = RedisUsageView(redis.Redis.from_url(redis_url), "na", clock=FakeClock(now))
    token = view.begin_rebuild(30)
    assert token is not None and view.finish_rebuild(token, {})
    start = to_ms(add_months(from_ms(now), -11))
    end = to_ms(add_months(from_ms(start), 12))
    assert view.usage(1, "c", "m", Aggregation.SUM, now - 3_600_000, now) == 0
    with pytest.raises(ViewNotReady):
        view.usage(1, "c", "m", Aggregation.SUM, start, end)
    with pytest.raises(ViewNotReady):
        view.reserve(1, "c", "m", "e1", 1, 10, start, end, now)
