"""The scheduler follows an injectable clock: hourly pushes, period-end flushes, nightly runs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from meterline.clock import FakeClock
from meterline.postgres import open_pool
from meterline.postgres.partitions import create_day_partition
from reporter.postgres.flushes import PostgresFlushWatch
from reporter.scheduler import Scheduler
from tests.reporter.support import emulator_clock, make_world, reporter_for, settings_for

pytestmark = pytest.mark.integration


def test_pushes_hourly_after_period_ends_and_reconciles_nightly(pg_conninfo):
    clock = FakeClock(datetime(2026, 11, 21, 1, 30, tzinfo=UTC))
    pushes, days = [], []
    with open_pool(pg_conninfo, max_size=2) as pool:
        settings = settings_for(push_interval_s=3600, settle_s=120, reconcile_hour_utc=2)
        scheduler = Scheduler(
            settings,
            clock,
            PostgresFlushWatch(pool),
            lambda: pushes.append(clock.now()),
            days.append,
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
        _received(pool, clock.now() + timedelta(minutes=11))
        clock.advance(600)
        scheduler.tick()
        assert len(pushes) == 2
        clock.advance(120)
        scheduler.tick()
        assert len(pushes) == 3  # the period ended settle_s ago: flushed now, not at the next hour
        clock.advance(86_400)
        scheduler.tick()
        assert days[-1] == datetime(2026, 11, 21).date() and len(days) == 2


def _received(pool, at, customer="c"):
    """An event the aggregator committed, received by ingest at `at`."""
    with pool.connection() as conn:
        create_day_partition(conn, at.date())
        conn.execute(
            "INSERT INTO usage_events (tenant_id, event_id, day, customer, meter, ts, value, "
            "received_at) VALUES (1, %s, %s, %s, 'api_calls', %s, 1, %s)",
            (f"evt_{customer}_{at.timestamp()}", at.date(), customer, at, at),
        )


def test_the_period_close_flush_waits_for_the_aggregator_and_alerts_when_it_cannot(pg_conninfo):
    clock = FakeClock(datetime(2026, 11, 21, 3, 30, tzinfo=UTC))
    pushes, blocked = [], []
    with open_pool(pg_conninfo, max_size=2) as pool:
        settings = settings_for(push_interval_s=3600, settle_s=120, flush_wait_s=1800)
        scheduler = Scheduler(
            settings, clock, PostgresFlushWatch(pool), lambda: pushes.append(clock.now()),
            lambda day: None,
            on_blocked=lambda tenant, customer, at: blocked.append((tenant, customer, at)),
        )  # fmt: skip
        scheduler.tick()
        assert len(pushes) == 1
        first = clock.now() + timedelta(minutes=5)
        second = clock.now() + timedelta(minutes=20)
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO report_boundaries VALUES (1, 'c', %s), (1, 'd', %s)", (first, second)
            )
        _received(pool, first - timedelta(seconds=1))  # before the boundary: not past it
        clock.advance(8 * 60)
        scheduler.tick()
        assert len(pushes) == 1  # settle_s passed, but the aggregator is not past the boundary
        _received(pool, first + timedelta(minutes=4))
        clock.advance(60)
        scheduler.tick()
        assert len(pushes) == 2 and blocked == []

        clock.advance(20 * 60)  # the second boundary passed settle_s ago; nothing received since
        scheduler.tick()
        assert len(pushes) == 2
        clock.advance(5 * 60)
        scheduler.tick()
        assert len(pushes) == 3 and blocked == []  # the hourly push at 04:04, not the flush
        clock.advance(17 * 60)  # flush_wait_s after the second boundary
        scheduler.tick()
        assert len(pushes) == 4 and blocked == [(1, "d", second)]


def test_a_blocked_flush_is_an_alert_of_its_own(pg_conninfo, stripe_emulator, stripe_client):
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    (c,) = world.customers.values()
    reporter = reporter_for(world, stripe_client, emulator_clock(stripe_emulator.control))
    reporter.flush_blocked(world.tenant_id, c.key, c.period_end)
    (alert,) = reporter.store.alerts(world.tenant_id, "open")
    assert (alert.kind, alert.customer, alert.meter, alert.window_start) == (
        "flush_blocked",
        c.key,
        "*",
        c.period_end,
    )


def test_the_flush_waits_for_the_customer_whose_period_ended_not_for_any_event(pg_conninfo):
    """Another customer's event past the boundary may have come through another partition:
    it says nothing of this customer's events still in flight."""
    clock = FakeClock(datetime(2026, 11, 22, 3, 30, tzinfo=UTC))
    pushes, blocked = [], []
    with open_pool(pg_conninfo, max_size=2) as pool:
        settings = settings_for(push_interval_s=3600, settle_s=120, flush_wait_s=1800)
        scheduler = Scheduler(
            settings, clock, PostgresFlushWatch(pool), lambda: pushes.append(clock.now()),
            lambda day: None,
            on_blocked=lambda tenant, customer, at: blocked.append((tenant, customer, at)),
        )  # fmt: skip
        scheduler.tick()
        boundary = clock.now() + timedelta(minutes=5)
        with pool.connection() as conn:
            conn.execute("INSERT INTO report_boundaries VALUES (1, 'e', %s)", (boundary,))
        _received(pool, boundary + timedelta(seconds=30), customer="other")
        clock.advance(8 * 60)
        scheduler.tick()
        assert len(pushes) == 1  # 'e' itself is not known to be past its boundary
        _received(pool, boundary + timedelta(minutes=5), customer="e")
        clock.advance(60)
        scheduler.tick()
        assert len(pushes) == 2 and blocked == []


def test_a_standby_runs_nothing_and_pushes_at_once_when_it_becomes_the_leader(pg_conninfo):
    clock = FakeClock(datetime(2026, 11, 21, 1, 30, tzinfo=UTC))
    pushes, leading = [], [False]
    with open_pool(pg_conninfo, max_size=2) as pool:
        settings = settings_for(push_interval_s=3600, reconcile_hour_utc=0)
        scheduler = Scheduler(
            settings, clock, PostgresFlushWatch(pool), lambda: pushes.append(clock.now()),
            lambda day: None,
            tick_s=0.01, leader=lambda: leading[0],
        )  # fmt: skip
        scheduler.start()
        try:
            _until(lambda: scheduler._leading is False)
            assert pushes == []
            leading[0] = True
            _until(lambda: len(pushes) == 1)
            leading[0] = False
            _until(lambda: scheduler._leading is False)
            leading[0] = True  # a leader again within the same hour: it pushes again at once
            _until(lambda: len(pushes) == 2)
        finally:
            scheduler.stop()


def _until(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_a_fresh_scheduler_flushes_a_boundary_that_passed_before_it_started(pg_conninfo):
    """A new leader (or a restarted reporter) still flushes a period that ended before its
    first tick, once the aggregator is past it, not only at the next hourly push."""
    clock = FakeClock(datetime(2026, 11, 21, 1, 10, tzinfo=UTC))
    pushes = []
    with open_pool(pg_conninfo, max_size=2) as pool:
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO report_boundaries VALUES (1, 'c', %s)",
                (clock.now() - timedelta(minutes=5),),
            )
        settings = settings_for(push_interval_s=3600, settle_s=120, reconcile_hour_utc=23)
        scheduler = Scheduler(
            settings,
            clock,
            PostgresFlushWatch(pool),
            lambda: pushes.append(clock.now()),
            lambda day: None,
        )
        scheduler.tick()
        assert len(pushes) == 1  # a fresh scheduler pushes at once; the aggregator is not past
        clock.advance(60)
        scheduler.tick()
        assert len(pushes) == 1
        _received(pool, clock.now() - timedelta(minutes=2))  # now it is
        clock.advance(15)
        scheduler.tick()
        assert len(pushes) == 2  # flushed now, not at 02:02
