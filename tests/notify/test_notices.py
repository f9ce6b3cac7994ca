"""Entitlement notices: which notices a consume's answer shows (pure), and the `NoticeLedger`
contract, run on the memory twin and on Postgres (each notice announced once, racing writers
included, its outbox message written with it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from meterline.entitlements.thresholds import (
    MemoryNoticeLedger,
    NoticeLedger,
    Notifier,
    notices,
)
from meterline.notify.postgres.notices import ARRAYS_FROM, PostgresNoticeLedger
from tests.notify.support import make_setup

PERIOD = {"start": "2026-12-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}


def body(used: float, limit: float | None = 100, **extra: Any) -> dict[str, Any]:
    return {"feature": "api_calls", "used": used, "limit": limit, "overage": "block",
            "plan": "free", "period": PERIOD, "as_of": "2026-12-06T10:00:00Z",
            "granted": True, "reason": "within_limit", **extra}  # fmt: skip


def names(b: dict[str, Any], percents: tuple[Any, ...] = (50, 80, 100)) -> list[str]:
    return [n.notice for n in notices(1, "c", b, percents)]


def test_every_reached_threshold_is_a_notice() -> None:
    assert names(body(49.9)) == []
    assert names(body(50)) == ["threshold:50"]
    assert names(body(99)) == ["threshold:50", "threshold:80"]
    assert names(body(100)) == ["threshold:50", "threshold:80", "threshold:100"]
    assert names(body(0.3, limit=0.6), (Decimal("49.5"),)) == ["threshold:49.5"]


def test_limit_exceeded_on_a_blocking_refusal_or_an_allowed_overage_past_the_limit() -> None:
    refused = body(95, granted=False, reason="limit_exceeded", has_access=False)
    assert names(refused) == ["threshold:50", "threshold:80", "limit_exceeded"]
    assert names(body(100, overage="allow")) == [
        "threshold:50", "threshold:80", "threshold:100",
    ]  # fmt: skip
    assert names(body(101, overage="allow"))[-1] == "limit_exceeded"
    assert names(body(10, granted=False, reason="not_in_plan")) == []


def test_unlimited_or_zero_limits_have_no_thresholds() -> None:
    assert names(body(10, limit=None)) == []
    assert names(body(0, limit=0)) == []


def test_a_notice_is_keyed_by_customer_feature_period_and_has_a_stable_message_id() -> None:
    (first,) = notices(7, "cust", body(60), (50,))
    (again,) = notices(7, "cust", body(70), (50,))
    assert first.key == (7, "cust", "api_calls", PERIOD["start"], "threshold:50")
    assert first.notification.msg_id == again.notification.msg_id
    data = first.notification.data
    assert (data["threshold"], data["used"], data["limit"], data["period"]) == (50, 60, 100, PERIOD)
    assert first.notification.type == "entitlement.threshold_reached"


class CountingLedger(MemoryNoticeLedger):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def record(self, found: Any) -> int:
        self.calls += 1
        return super().record(found)


def test_the_notifier_skips_the_round_trip_for_notices_it_recorded() -> None:
    ledger = CountingLedger()
    notifier = Notifier(ledger)
    for used in (10, 60, 61, 62, 85, 86):
        notifier.announce(1, "c", body(used), (50, 80))
    assert ledger.calls == 2
    assert [n.data["threshold"] for n in ledger.announced] == [50, 80]


@pytest.fixture(params=["memory", "postgres"])
def ledger(request: pytest.FixtureRequest) -> Iterator[tuple[NoticeLedger, int, Any]]:
    if request.param == "memory":
        yield MemoryNoticeLedger(), 1, None
        return
    setup = make_setup(request.getfixturevalue("pg_conninfo"), pool_size=10)
    yield PostgresNoticeLedger(setup.pool), setup.tenant_id, setup.pool
    setup.pool.close()


def announced(ledger: NoticeLedger, pool: Any) -> list[str]:
    if pool is None:
        assert isinstance(ledger, MemoryNoticeLedger)
        return [n.msg_id for n in ledger.announced]
    with pool.connection() as conn:
        rows = conn.execute("SELECT msg_id FROM webhook_messages ORDER BY id").fetchall()
    return [r[0] for r in rows]


def test_contract_each_notice_is_recorded_once(ledger) -> None:
    store, tenant, pool = ledger
    first = notices(tenant, "c", body(85), (50, 80, 100))
    assert store.record(first) == 2
    assert store.record(notices(tenant, "c", body(100), (50, 80, 100))) == 1
    assert store.record(first) == 0
    assert len(announced(store, pool)) == 3
    other_period = body(60, period={"start": "2027-01-01T00:00:00Z", "end": "2027-02-01T00:00:00Z"})
    assert store.record(notices(tenant, "c", other_period, (50,))) == 1


def test_contract_racing_writers_announce_each_notice_once(ledger) -> None:
    store, tenant, pool = ledger
    counts: list[int] = []
    start = threading.Barrier(8)

    def writer() -> None:
        start.wait()
        for used in (55, 85, 100):
            counts.append(store.record(notices(tenant, "hot", body(used), (50, 80, 100))))

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 3
    ids = announced(store, pool)
    assert len(ids) == len(set(ids)) == 3


def test_contract_a_batch_of_customers_records_only_its_new_notices(ledger) -> None:
    """What the detector records for a batch: many customers' notices in one `record`, some
    already recorded by a consume; each new one announced, in the batch's order."""
    store, tenant, pool = ledger
    earlier = notices(tenant, "b", body(60), (50, 80, 100))  # b's 50%, from a consume
    assert store.record(earlier) == 1
    customers = [f"c{n}" for n in range(ARRAYS_FROM)]  # enough for the array form
    batch = [n for c in ["b", *customers] for n in notices(tenant, c, body(85), (50, 80, 100))]
    assert store.record(batch) == len(batch) - 1
    assert store.record(batch) == 0
    new = [n for n in batch if n.key != earlier[0].key]
    assert announced(store, pool) == [n.notification.msg_id for n in (*earlier, *new)]


def test_the_notifier_records_a_batch_of_answers_in_one_call() -> None:
    calls: list[int] = []

    class Counting(MemoryNoticeLedger):
        def record(self, found: Any) -> int:
            calls.append(len(found))
            return super().record(found)

    notifier = Notifier(Counting())
    answers = [(1, c, body(used), (50, 80, 100)) for c, used in (("a", 85), ("b", 40), ("c", 50))]
    notifier.announce_many(answers)
    notifier.announce_many(answers)  # all known: no call
    assert calls == [3]


@pytest.mark.parametrize("others", [0, ARRAYS_FROM])  # the row-by-row and the array forms
def test_contract_a_notice_twice_in_one_record_is_announced_once_as_first_given(
    ledger, others: int
) -> None:
    store, tenant, pool = ledger
    more = [notices(tenant, f"o{n}", body(55), (50,))[0] for n in range(others)]
    (first,) = notices(tenant, "c", body(55), (50,))
    (again,) = notices(tenant, "c", body(60), (50,))
    assert store.record([first, *more, again]) == 1 + others
    assert announced(store, pool) == [n.notification.msg_id for n in (first, *more)]
    if pool is not None:
        with pool.connection() as conn:
            (used,) = conn.execute("SELECT body FROM webhook_messages").fetchone()
        assert b'"used":55' in bytes(used)
