"""The scheduler follows an injectable clock: hourly pushes, period-end flushes, nightly runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from meterline.clock import FakeClock
from meterline.postgres import open_pool
from reporter.scheduler import Scheduler
from tests.reporter.support import settings_for

pytestmark = pytest.mark.integration


def test_pushes_hourly_after_period_ends_and_reconciles_nightly(pg_conninfo):
    clock = FakeClock(datetime(2026, 11, 21, 1, 30, tzinfo=UTC))
    pushes, days = [], []
    with open_pool(pg_conninfo, max_size=2) as pool:
        settings = settings_for(push_interval_s=3600, settle_s=120, reconcile_hour_utc=2)
        scheduler = Scheduler(
            settings, clock, pool, lambda: pushes.append(clock.now()), days.append
        )
        scheduler.tick()
        scheduler.tick()
        assert len(pushes) == 1 and days == []
        clock.advance(1800)  # 02:00 - settle not yet passed: no push, but the nightly run
        scheduler.tick()
        assert len(pushes) == 1 and days == [datetime(2026, 11, 20).date()]
        clock.advance(180)
        scheduler.tick()
        assert len(pushes) == 2
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO report_boundaries VALUES (1, 'c', %s)",
                (clock.now() + timedelta(minutes=10),),
            )
        clock.advance(600)
        scheduler.tick()
        assert len(pushes) == 2
        clock.advance(120)
        scheduler.tick()
        assert len(pushes) == 3  # the period ended settle_s ago: flushed now, not at the next hour
        clock.advance(86_400)
        scheduler.tick()
        assert days[-1] == datetime(2026, 11, 21).date() and len(days) == 2
