"""SIGKILL between the Stripe call and the ledger update, many times: never a double count."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.reporter.support import (
    add_usage,
    emulator_clock,
    make_world,
    postgres_total,
    stripe_totals,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("stream_threshold", [1000, 2], ids=["v1", "stream"])
def test_sigkill_after_stripe_answered_never_double_counts(
    pg_conninfo, stripe_emulator, stripe_client, tmp_path, stream_threshold
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=3)
    clock = emulator_clock(control)
    for c in world.customers.values():
        for h in range(1, 6):
            add_usage(world, c.key, clock.now() - timedelta(hours=h, minutes=5), h)
    env = {
        **os.environ,
        "METERLINE_HOME": str(tmp_path),
        "METERLINE_DATABASE_URL": pg_conninfo,
        "METERLINE_STRIPE_API_BASE": stripe_emulator.url,
        "METERLINE_STRIPE_API_KEY": stripe_emulator.api_key,
        "METERLINE_REPORTER_CRASH_AFTER_SEND": "0.5",
        "METERLINE_REPORTER_PUSH_BATCH": "2",
        "METERLINE_REPORTER_STREAM_THRESHOLD": str(stream_threshold),
    }
    kills = 0
    for run in range(60):
        env["METERLINE_REPORTER_CRASH_SEED"] = str(run)  # repeatable kills, different each run
        done = subprocess.run(
            [sys.executable, "-m", "reporter.jobs", "push"], env=env, cwd=ROOT,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode == -9:
            kills += 1
            continue
        assert done.returncode == 0, done.stderr
        if "0 new revision(s)" in done.stdout and "0 resent" in done.stdout:
            break
    assert kills >= 3, kills
    totals = stripe_totals(control, world.event_name)
    for c in world.customers.values():
        assert totals[c.stripe_id] == postgres_total(
            world, c.key, clock.now() - timedelta(days=1), clock.now()
        )
        assert totals[c.stripe_id] == Decimal(15)
    with world.pool.connection() as conn:
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM report_ledger GROUP BY 1").fetchall()
        )
    assert statuses == {"sent": 15}
    if stream_threshold > 100:
        requests = control.requests(path="/v1/billing/meter_events")
        resends = [r for r in requests if r.get("replayed") or r["status"] == 400]
        assert resends, "a resend after a kill is replayed or meets the duplicate-identifier 400"


def test_cli_commands_run_the_jobs(pg_conninfo, stripe_emulator, stripe_client, tmp_path):
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    c = next(iter(world.customers.values()))
    clock = emulator_clock(stripe_emulator.control)
    add_usage(world, c.key, clock.now() - timedelta(days=1), 9)
    env = {
        **os.environ,
        "METERLINE_HOME": str(tmp_path),
        "METERLINE_DATABASE_URL": pg_conninfo,
        "METERLINE_STRIPE_API_BASE": stripe_emulator.url,
        "METERLINE_STRIPE_API_KEY": stripe_emulator.api_key,
    }
    meterline = [sys.executable, "-m", "meterline_ops.main"]
    pushed = subprocess.run([*meterline, "report", "run"], env=env, capture_output=True, text=True)
    assert pushed.returncode == 0 and "1 delivered" in pushed.stdout, pushed.stderr
    day = (clock.now() - timedelta(days=1)).date().isoformat()
    checked = subprocess.run(
        [*meterline, "reconcile", "run", "--date", day], env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0 and "0 discrepancy(ies)" in checked.stdout, checked.stderr
    nightly = subprocess.run([*meterline, "reconcile", "run"], env=env, capture_output=True,
                             text=True)  # fmt: skip
    assert nightly.returncode == 0 and f"{day} run" in nightly.stdout, nightly.stderr
    bad = subprocess.run([*meterline, "reconcile", "run", "--date", "yesterday"], env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
