"""One active reporter scheduler across replicas, with failover on SIGKILL and no double push."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.reliability.replicas import Replica, stop_all
from meterline.entitlements.usage_notices import lock_key
from meterline.postgres.leadership import LEADER_KEY, Leadership, connector
from tests.reporter.support import add_usage, emulator_clock, make_world, stripe_totals

pytestmark = pytest.mark.integration
PUSHES = "meterline_reporter_push_runs_total"
ACTIVE = "meterline_reporter_scheduler_active"


def test_one_leader_at_a_time_and_the_next_takes_over_when_its_session_ends(
    pg_conninfo: str,
) -> None:
    changes: list[tuple[str, bool]] = []
    a = Leadership(connector(pg_conninfo), lambda held: changes.append(("a", held)))
    b = Leadership(connector(pg_conninfo), lambda held: changes.append(("b", held)))
    assert a() and not b()
    assert a() and not b()  # kept, not taken twice
    with psycopg.connect(pg_conninfo, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND objid = %s",
            (LEADER_KEY,),
        )
    assert not a()  # its session is gone: it stops leading at once
    _wait(b, 5, "b to take the lock a's ended session released")
    assert not a()
    b.release()
    _wait(a, 5, "a to take the lock b released")  # the server ends b's session a moment later
    assert changes == [("a", True), ("a", False), ("b", True), ("b", False), ("a", True)]
    a.release()


def test_postgres_unreachable_means_not_leading() -> None:
    lead = Leadership(connector("postgresql://nobody@127.0.0.1:9/none"))
    assert lead() is False


def _reporters(env: dict[str, str], logs: Path) -> list[Replica]:
    return [Replica("reporter", f"reporter-{n}", env, logs) for n in "ab"]


def _meter_events(control: Any) -> list[dict[str, Any]]:
    """Every meter event request Stripe received, whatever its answer."""
    return list(control.requests(path="/v1/billing/meter_events"))


@pytest.mark.reliability
def test_exactly_one_reporter_pushes_and_a_sigkill_hands_over_without_a_double_push(
    pg_conninfo: str, stripe_emulator: Any, stripe_client: Any, tmp_path: Path
) -> None:
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=3)
    clock = emulator_clock(control)
    for c in world.customers.values():
        for h in range(2, 5):
            add_usage(world, c.key, clock.now() - timedelta(hours=h, minutes=5), h)
    env = {
        "METERLINE_DATABASE_URL": pg_conninfo,
        "METERLINE_STRIPE_API_BASE": stripe_emulator.url,
        "METERLINE_STRIPE_API_KEY": stripe_emulator.api_key,
        "METERLINE_REPORTER_TICK_S": "0.5",
        "METERLINE_REPORTER_PUSH_INTERVAL_S": "10",
        "METERLINE_REPORTER_STRIPE_LAG_S": "0",
    }
    replicas = _reporters(env, tmp_path)
    try:
        for r in replicas:
            r.start()
        _wait(lambda: len(_meter_events(control)) >= 9, 30, "the first push")
        time.sleep(1.5)  # three more ticks of each: the standby must stay idle
        active = [r for r in replicas if r.metric(ACTIVE) == 1]
        assert len(active) == 1, [r.metric(ACTIVE) for r in replicas]
        (leader,) = active
        (standby,) = [r for r in replicas if r is not leader]
        assert leader.metric(PUSHES) >= 1 and standby.metric(PUSHES) == 0
        for c in world.customers.values():  # usage the next leader must push
            add_usage(world, c.key, clock.now() - timedelta(hours=1, minutes=5), 1)
        killed_at = time.monotonic()
        leader.kill()
        _wait(lambda: standby.metric(PUSHES) >= 1, 30, "the standby to take over and push")
        handover = time.monotonic() - killed_at
        _wait(lambda: len(_meter_events(control)) >= 12, 30, "the new hour's usage")
        assert standby.metric(ACTIVE) == 1
    finally:
        stop_all(replicas)
    assert handover < 30
    sent = Counter(r["params"]["identifier"] for r in _meter_events(control))
    assert all(n == 1 for n in sent.values()), sent.most_common(3)
    totals = stripe_totals(control, world.event_name)
    assert sorted(totals.values()) == [10, 10, 10]  # 2 + 3 + 4 + 1 per customer, each once


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_each_lock_key_has_its_own_leader(pg_conninfo: str) -> None:
    """The detector of usage notices takes a lock per view prefix, apart from the scheduler's."""
    scheduler = Leadership(connector(pg_conninfo))
    ml = Leadership(connector(pg_conninfo), key=lock_key("ml"), name="notices")
    ml_again = Leadership(connector(pg_conninfo), key=lock_key("ml"), name="notices")
    bench = Leadership(connector(pg_conninfo), key=lock_key("b1234"), name="notices")
    assert scheduler() and ml() and bench()
    assert not ml_again()  # one detector per view
    ml.release()
    _wait(ml_again, 5, "the other detector to take over")
    for lead in (scheduler, ml_again, bench):
        lead.release()
