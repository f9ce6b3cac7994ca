"""The view is made ready again while no batch arrives: a quiet system after a Redis flush (or a
Redis restart), or with a watermark behind Postgres, must not stay unavailable to RESERVE."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from psycopg_pool import ConnectionPool

from meterline.clock import SystemClock
from meterline.view.model import DAY_MS
from meterline.view.postgres.rebuild import stored_offsets
from tests.aggregator.support import (
    Aggregator,
    consumed,
    make_stream,
    publish,
    redis_view,
    running,
    setup_tenant,
    wait_for,
)
from tests.aggregator.test_exactly_once import assert_exact
from tests.fixtures.services import Topics

pytestmark = pytest.mark.integration
QUIET_S = 15  # far more than the aggregator's idle check needs; nothing else rebuilds the view


def reserve_granted(redis_url: str, tenant: int, event_id: str) -> bool:
    """A consume's RESERVE of 1 unit of `calls` without a limit, over the last day."""
    now = SystemClock().now_ms()
    view = redis_view(redis_url)
    return view.reserve(
        tenant, "cust00", "calls", event_id, 1.0, None, now - DAY_MS, now, 60
    ).granted


def test_a_flushed_view_is_rebuilt_without_a_new_batch(
    pool: ConnectionPool,
    service_env: dict[str, str],
    kafka_topics: Topics,
    redis_url: str,
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    stream = make_stream(tenant, 3_000, seed=21)
    publish(service_env["METERLINE_KAFKA_BOOTSTRAP"], kafka_topics.usage, stream.events)
    view = redis_view(redis_url)
    with running(Aggregator(service_env, tmp_path / "agg.log")):
        wait_for(lambda: consumed(pool) == len(stream.events), 90, "every message")
        assert_exact(pool, redis_url, tenant, stream.expected)
        redis.Redis.from_url(redis_url).flushall()
        assert view.watermarks() is None
        wait_for(lambda: view.watermarks() is not None, QUIET_S, "the view to be ready again")
        assert_exact(pool, redis_url, tenant, stream.expected)
        assert reserve_granted(redis_url, tenant, "after-flush")


def test_a_watermark_behind_postgres_is_rebuilt_without_a_new_batch(
    pool: ConnectionPool,
    service_env: dict[str, str],
    kafka_topics: Topics,
    redis_url: str,
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    stream = make_stream(tenant, 3_000, seed=22)
    publish(service_env["METERLINE_KAFKA_BOOTSTRAP"], kafka_topics.usage, stream.events)
    view = redis_view(redis_url)
    with running(Aggregator(service_env, tmp_path / "agg.log")):
        wait_for(lambda: consumed(pool) == len(stream.events), 90, "every message")
        assert_exact(pool, redis_url, tenant, stream.expected)
        stored = stored_offsets(pool)
        stream_name = max(stored, key=stored.__getitem__)
        redis.Redis.from_url(redis_url).hset("ml:meta:wm", stream_name, 0)  # an older snapshot
        assert (view.watermarks() or {}).get(stream_name) == 0
        wait_for(lambda: view.watermarks() == stored, QUIET_S, "the view to catch up again")
        assert_exact(pool, redis_url, tenant, stream.expected)
        assert reserve_granted(redis_url, tenant, "after-restore")
