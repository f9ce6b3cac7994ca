"""One contract, two repositories: the in-memory twin and Postgres (migration 0022). Each
step once under duplicate deliveries, racing callers and a failure mid-change; what is due;
what is open; what the API shows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from meterline.dunning import DunningPolicy
from meterline.dunning import postgres as dunning_postgres
from meterline.dunning.postgres import PostgresDunningRepository
from meterline.dunning.repository import MemoryDunningRepository
from meterline.postgres import open_pool
from tests.dunning.support import DAY, T0, Kit, invoice, make_kit
from tests.dunning.test_service import WALK, _walk

POLICY = DunningPolicy()


@pytest.fixture(params=["memory", "postgres"])
def kit(request: pytest.FixtureRequest) -> Iterator[Kit]:
    if request.param == "memory":
        yield make_kit(MemoryDunningRepository(POLICY))
        return
    conninfo = request.getfixturevalue("pg_conninfo")
    with open_pool(conninfo, max_size=4) as pool:
        with pool.connection() as conn:
            row = conn.execute("INSERT INTO tenants (name) VALUES ('acme') RETURNING id")
            tenant_id = row.fetchone()[0]  # type: ignore[index]

        def messages() -> list[tuple[str, str | None]]:
            with pool.connection() as conn:
                rows = conn.execute("SELECT event_type, body FROM webhook_messages ORDER BY id")
                return [(t, orjson.loads(b)["data"].get("step")) for t, b in rows]

        yield make_kit(PostgresDunningRepository(pool, POLICY), POLICY, tenant_id, messages)


def test_the_whole_walk_twice_over_stores_each_step_once(kit: Kit) -> None:
    _walk(kit, twice=True)
    assert kit.published() == WALK
    seq = kit.repo.get(kit.tenant_id, "in_1")
    assert seq is not None and seq.restored and seq.steps["downgraded"] == T0 + 21 * DAY


def test_what_is_due_open_and_shown(kit: Kit) -> None:
    kit.fail(1)
    t = kit.tenant_id
    assert kit.repo.due(T0 + 3 * DAY - DAY / 10) == []
    assert kit.repo.due(T0 + 3 * DAY) == [(t, "in_1")]
    assert kit.repo.open_for("sub_1") == [(t, "in_1")]
    assert kit.repo.has_open("in_1") and not kit.repo.has_open("in_2")
    shown = kit.dunning.shown(t, "c1")
    assert shown is not None
    assert (shown["step"], shown["next_step"], shown["next_step_at"]) == (
        "notice", "reminder", "2027-03-04T12:00:00Z",
    )  # fmt: skip
    assert shown["update_url"] == "https://pay.example/in_1"
    kit.pay(T0 + DAY)
    assert kit.repo.open_for("sub_1") == [] and kit.repo.due(T0 + 99 * DAY) == []
    assert not kit.repo.has_open("in_1")
    assert kit.dunning.shown(t, "c1") is None


def test_a_failure_inside_a_change_stores_and_announces_nothing(kit: Kit) -> None:
    kit.fail(1)

    def crash(seq: Any) -> Any:
        raise RuntimeError("the job died between the step and its write")

    with pytest.raises(RuntimeError):
        kit.repo.change(kit.tenant_id, "in_1", crash)
    kit.clock_to(T0 + 3 * DAY)
    assert kit.dunning.run_due() == 1
    assert [s for _t, s in kit.published() if s] == ["notice", "reminder"]


def test_racing_job_runs_take_each_step_once(kit: Kit) -> None:
    kit.fail(1)
    kit.clock_to(T0 + 3 * DAY)
    runners = [threading.Thread(target=kit.dunning.run_due) for _ in range(6)]
    for r in runners:
        r.start()
    for r in runners:
        r.join()
    assert [s for _t, s in kit.published() if s] == ["notice", "reminder"]


def test_an_older_view_of_the_invoice_does_not_move_it_back(kit: Kit) -> None:
    kit.fail(1)
    kit.fail(2)
    kit.invoices.now["in_1"] = invoice(1)  # a stale read
    kit.dunning.on_event(kit.event("invoice.payment_failed", invoice(1), T0))
    seq = kit.repo.get(kit.tenant_id, "in_1")
    assert seq is not None and seq.attempt_count == 2


def test_a_crash_after_the_step_is_written_but_before_its_notice_loses_neither(
    pg_conninfo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job dies between storing the reminder and writing its notification to the outbox:
    the transaction ends with the connection, so the next run takes the step, once."""
    with open_pool(pg_conninfo, max_size=2) as pool:
        with pool.connection() as conn:
            row = conn.execute("INSERT INTO tenants (name) VALUES ('acme') RETURNING id")
            tenant_id = row.fetchone()[0]  # type: ignore[index]
        repo = PostgresDunningRepository(pool, POLICY)
        kit = make_kit(repo, POLICY, tenant_id)
        kit.fail(1)
        kit.clock_to(T0 + 3 * DAY)
        real = dunning_postgres.publish

        def dying(conn: Any, notification: Any) -> None:
            if notification.type == "dunning.reminder":
                raise ConnectionError("killed after the upsert, before the outbox")
            real(conn, notification)

        monkeypatch.setattr(dunning_postgres, "publish", dying)
        assert kit.dunning.run_due() == 0
        seq = repo.get(tenant_id, "in_1")
        assert seq is not None and "reminder" not in seq.steps
        monkeypatch.setattr(dunning_postgres, "publish", real)
        assert kit.dunning.run_due() == 1
        assert kit.dunning.run_due() == 0
        with pool.connection() as conn:
            types = [t for (t,) in conn.execute("SELECT event_type FROM webhook_messages")]
        assert sorted(types) == ["dunning.notice", "dunning.reminder", "payment.failed"]


def test_a_job_killed_inside_its_transaction_loses_and_doubles_nothing(
    pg_conninfo: str, tmp_path: Path
) -> None:
    """SIGKILL of a real job process after it wrote the reminder and before its outbox row:
    Postgres ends the transaction with the connection; the next run takes the step once."""
    with open_pool(pg_conninfo, max_size=2) as pool:
        with pool.connection() as conn:
            row = conn.execute("INSERT INTO tenants (name) VALUES ('acme') RETURNING id")
            tenant_id = row.fetchone()[0]  # type: ignore[index]
        repo = PostgresDunningRepository(pool, POLICY)
        kit = make_kit(repo, POLICY, tenant_id)
        kit.fail(1)
        marker = tmp_path / "marker"
        root = Path(__file__).resolve().parents[2]
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.dunning.crash_child", pg_conninfo, str(tenant_id),
             str(marker)],
            cwd=root, env={**os.environ, "PYTHONPATH": f"{root}:{root / 'devstack'}"},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not marker.exists():
                assert child.poll() is None, "the job process ended before the step"
                assert time.monotonic() < deadline, "the job process never reached the step"
                time.sleep(0.05)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        seq = repo.get(tenant_id, "in_1")
        assert seq is not None and "reminder" not in seq.steps
        kit.clock_to(T0 + 3 * DAY)
        assert kit.dunning.run_due() == 1
        assert kit.dunning.run_due() == 0
        with pool.connection() as conn:
            types = [t for (t,) in conn.execute("SELECT event_type FROM webhook_messages")]
        assert sorted(types) == ["dunning.notice", "dunning.reminder", "payment.failed"]
