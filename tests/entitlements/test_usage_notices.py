"""The detector of counted usage with in-memory parts: the memory view marks the customers a
batch changed (as the aggregator's APPLY does in Redis), `UsageNoticeSweep` decides them with
`EntitlementService.announce_usage` (a batch at a time: one read, plan data once, a decision
only where usage shows something new), and each notice is recorded once whoever sees it first."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterline.catalog import Aggregation, MemoryCatalogRepository, load_catalog
from meterline.clock import FakeClock
from meterline.entitlements import (
    EntitlementService,
    MemoryAnswerStore,
    MemoryCustomerRepository,
    MemoryGrantRepository,
    MemorySubscriptionRepository,
    ViewUsage,
)
from meterline.entitlements.model import Subscription
from meterline.entitlements.periods import Period
from meterline.entitlements.repository import NewGrant
from meterline.entitlements.thresholds import Answer, Notice, Notifier
from meterline.entitlements.usage_notices import UsageNoticeSweep
from meterline.view import Delta, MemoryUsageView, Reservation, ReserveAsk
from meterline.view.touched import MemoryTouched
from tests.entitlements.catalogs import SMALL_YAML
from tests.entitlements.test_service import Publisher
from tests.entitlements.test_service_notices import FlakyLedger, announced

NOW = datetime(2026, 11, 18, 12, tzinfo=UTC)


class Rig:
    def __init__(self) -> None:
        self.clock = FakeClock(NOW)
        self.catalogs = MemoryCatalogRepository()
        free = "  - key: free\n"
        yaml = SMALL_YAML.replace(free, free + "    notify_at: [50, 80, 100]\n")
        self.catalogs.apply(1, load_catalog(yaml))
        self.touched = MemoryTouched()
        self.view = MemoryUsageView(self.clock, touched=self.touched)
        self.ledger = FlakyLedger()
        self.subs = MemorySubscriptionRepository()
        self.customers = MemoryCustomerRepository()
        self.grants = MemoryGrantRepository(self.customers)
        self.service = EntitlementService(
            self.catalogs, self.subs, self.grants,
            ViewUsage(self.view), self.view, Publisher(), MemoryAnswerStore(), self.clock,
            notifier=Notifier(self.ledger),
        )  # fmt: skip
        self.sweep = UsageNoticeSweep(self.touched, self.service.announce_usage, batch=2)

    def restarted(self) -> UsageNoticeSweep:
        """The sweep of a new process over the same view, feed and ledger (no memo)."""
        self.service = EntitlementService(
            self.catalogs, self.subs, MemoryGrantRepository(MemoryCustomerRepository()),
            ViewUsage(self.view), self.view, Publisher(), MemoryAnswerStore(), self.clock,
            notifier=Notifier(self.ledger),
        )  # fmt: skip
        return UsageNoticeSweep(self.touched, self.service.announce_usage, batch=500)

    def count(self, customer: str, value: int, tenant: int = 1) -> None:
        """What the aggregator does for a batch of this customer's ingested events."""
        minute = self.clock.now_ms() // 60_000 * 60_000
        d = Delta(tenant, customer, "api_calls", Aggregation.SUM, minute, Decimal(value), 1, minute)
        self.view.apply([d], [])


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_ingested_usage_is_announced_once_per_threshold(rig: Rig) -> None:
    rig.count("c", 20)
    assert rig.sweep.sweep() == 1 and rig.ledger.announced == []  # 40%: nothing yet
    rig.count("c", 5)
    rig.count("c", 16)
    rig.sweep.sweep()  # 82%
    rig.count("c", 9)
    rig.sweep.sweep()  # 100%
    rig.count("c", 30)
    rig.sweep.sweep()
    assert rig.sweep.sweep() == 0  # nothing touched since
    assert announced(rig.ledger) == [
        ("entitlement.threshold_reached", 50), ("entitlement.threshold_reached", 80),
        ("entitlement.threshold_reached", 100),
    ]  # fmt: skip
    assert rig.ledger.announced[-1].data["used"] == 50


def test_a_pass_takes_everyone_touched_before_it_in_batches(rig: Rig) -> None:
    for n in range(5):
        rig.count(f"c{n}", 40)
    assert rig.sweep.sweep() == 5
    assert rig.touched.backlog() == 0
    found = sorted(n.customer for n in rig.ledger.announced)
    assert found == [f"c{n}" for n in range(5) for _ in (50, 80)]  # 40 of 50: 80%


def test_a_failure_keeps_the_customer_for_the_next_pass(rig: Rig) -> None:
    rig.count("c", 45)
    rig.ledger.down = True
    assert rig.sweep.sweep() == 0
    assert rig.touched.backlog() == 1
    rig.ledger.down = False
    assert rig.sweep.sweep() == 1
    assert announced(rig.ledger) == [
        ("entitlement.threshold_reached", 50), ("entitlement.threshold_reached", 80),
    ]  # fmt: skip


def test_features_without_thresholds_and_tenants_without_catalog_read_nothing(rig: Rig) -> None:
    rig.subs.put(Subscription(1, "paid", "basic"))
    rig.count("paid", 1000)  # basic: no notify_at, overage block
    rig.count("x", 1, tenant=99)  # no catalog
    assert rig.sweep.sweep() == 2
    assert rig.ledger.announced == []


def test_the_detector_and_racing_consumes_announce_once(rig: Rig) -> None:
    rig.count("c", 30)
    stop = threading.Event()
    sweeper = threading.Thread(target=lambda: [rig.sweep.sweep() for _ in iter(stop.is_set, True)])
    sweeper.start()
    threads = [
        threading.Thread(target=rig.service.consume, args=(1, "c", "api_calls", 1, f"e{n}"))
        for n in range(30)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rig.count("c", 20)
    stop.set()
    sweeper.join()
    rig.sweep.sweep()
    assert announced(rig.ledger) == [
        ("entitlement.threshold_reached", 50), ("entitlement.threshold_reached", 80),
        ("entitlement.threshold_reached", 100), ("entitlement.limit_exceeded", None),
    ]  # fmt: skip


def counted_reads(rig: Rig) -> list[str]:
    """The customers whose usage the detector reads from now on, in order."""
    reads: list[str] = []
    current_many = rig.service.current_many

    def counting(tenant_id: int, wanted: Sequence[tuple[str, str, Period]]) -> list[Decimal]:
        reads.extend(customer for customer, _meter, _period in wanted)
        return current_many(tenant_id, wanted)

    rig.service.current_many = counting  # type: ignore[method-assign]
    return reads


def test_a_customer_past_its_last_threshold_is_not_decided_again(rig: Rig) -> None:
    reads = counted_reads(rig)
    rig.count("c", 60)
    rig.count("d", 10)
    rig.sweep.sweep()
    rig.count("c", 1)
    rig.count("d", 1)
    rig.sweep.sweep()
    assert reads == ["c", "d", "d"]  # c's 50/80/100 are recorded: nothing left to read for


class CountingView(MemoryUsageView):
    """The memory view, counting `reserve_many` calls and the asks in each."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def reserve_many(self, asks: Sequence[ReserveAsk]) -> list[Reservation | Exception]:
        self.batches.append(len(asks))
        return super().reserve_many(asks)


def test_a_batch_of_customers_is_read_in_one_call_and_plan_data_once() -> None:
    rig = Rig()
    rig.view = CountingView(rig.clock, touched=rig.touched)
    rig.service._view = rig.view
    rig.service._usage = ViewUsage(rig.view)
    plans = CountingSubs()
    rig.service._subs = plans
    rig.sweep = UsageNoticeSweep(rig.touched, rig.service.announce_usage, batch=500)
    for n in range(7):
        rig.count(f"c{n}", 10 + n)
    assert rig.sweep.sweep() == 7
    assert rig.view.batches == [7]  # one pipeline for the batch, not one probe per customer
    assert plans.calls == [("many", 7)]  # one statement for the batch's plan data
    for n in range(7):
        rig.count(f"c{n}", 1)
    rig.sweep.sweep()
    assert rig.view.batches == [7, 7] and plans.calls == [("many", 7)]  # plan data cached


class CountingSubs(MemorySubscriptionRepository):
    """Counts the statements a Postgres repository would run (the memory `get_many` is a
    loop of `get`: not counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []
        self._many = False

    def get(self, tenant_id: int, customer: str) -> Subscription | None:
        if not self._many:
            self.calls.append(("one", 1))
        return super().get(tenant_id, customer)

    def get_many(self, tenant_id: int, customers: Sequence[str]) -> dict[str, Subscription]:
        self.calls.append(("many", len(customers)))
        self._many = True
        try:
            return super().get_many(tenant_id, customers)
        finally:
            self._many = False


def test_usage_below_the_next_threshold_is_not_decided(rig: Rig) -> None:
    decided: list[str] = []
    notifier = rig.service.notifier
    assert notifier is not None
    announce_many = notifier.announce_many

    def counting(answers: Sequence[Answer]) -> None:
        decided.extend(f"{customer}:{body['used']}" for _t, customer, body, _p in answers)
        announce_many(answers)

    notifier.announce_many = counting  # type: ignore[method-assign]
    rig.count("c", 24)  # 48%
    rig.sweep.sweep()
    rig.count("c", 1)  # 50%: reached
    rig.sweep.sweep()
    rig.count("c", 10)  # 70%: 80 next
    rig.sweep.sweep()
    rig.count("c", 5)  # 80%
    rig.sweep.sweep()
    assert decided == ["c:25", "c:40"]
    assert announced(rig.ledger) == [
        ("entitlement.threshold_reached", 50), ("entitlement.threshold_reached", 80),
    ]  # fmt: skip


def test_a_failed_batch_is_decided_one_by_one_up_to_the_failing_customer(rig: Rig) -> None:
    record = rig.ledger.record

    def failing_for_b(found: list[Notice]) -> int:
        if any(n.customer == "b" for n in found):
            raise OSError("postgres is gone")
        return record(found)

    rig.ledger.record = failing_for_b  # type: ignore[method-assign]
    rig.sweep = UsageNoticeSweep(rig.touched, rig.service.announce_usage, batch=10)
    for c in ("a", "b", "c"):
        rig.count(c, 30)
    assert rig.sweep.sweep() == 1  # a; b failed, c waits with it
    assert [t.customer for t in rig.touched.take(10)] == ["b", "c"]
    rig.ledger.record = record  # type: ignore[method-assign]
    assert rig.sweep.sweep() == 2
    assert sorted(n.customer for n in rig.ledger.announced) == ["a", "b", "c"]


def test_customers_of_one_batch_are_each_decided_by_their_own_terms(rig: Rig) -> None:
    """Plain customers share the default plan's evaluation; one with a grant or a plan of its
    own gets its own limit."""
    rig.customers.create(1, "credited", None, None)
    rig.grants.add(1, NewGrant("credited", "api_calls", "credit", 50, NOW - timedelta(days=1)))
    rig.subs.put(Subscription(1, "power", "power"))  # 100,000, overage allow: no notify_at
    rig.sweep = UsageNoticeSweep(rig.touched, rig.service.announce_usage, batch=10)
    for customer, value in (("p1", 41), ("credited", 55), ("power", 100_001), ("p2", 26)):
        rig.count(customer, value)
    assert rig.sweep.sweep() == 4
    assert sorted((n.customer, n.type, n.data.get("threshold")) for n in rig.ledger.announced) == [
        ("credited", "entitlement.threshold_reached", 50),  # 55 of 50 + 50
        ("p1", "entitlement.threshold_reached", 50), ("p1", "entitlement.threshold_reached", 80),
        ("p2", "entitlement.threshold_reached", 50),
        ("power", "entitlement.limit_exceeded", None),
    ]  # fmt: skip


class Killed(BaseException):
    """The process dying mid-pass: no `except Exception` catches it."""


def test_a_replica_killed_mid_pass_leaves_nothing_missed_nor_doubled(rig: Rig) -> None:
    rig.count("a", 30)  # 60%
    rig.count("b", 45)  # 90%
    record = rig.ledger.record

    def dies_after_recording(found: list[Notice]) -> int:
        record(found)
        raise Killed  # after the ledger's transaction, before the feed hears `done`

    rig.ledger.record = dies_after_recording  # type: ignore[method-assign]
    rig.sweep = UsageNoticeSweep(rig.touched, rig.service.announce_usage, batch=1)
    with pytest.raises(Killed):
        rig.sweep.sweep()
    rig.ledger.record = record  # type: ignore[method-assign]
    assert rig.touched.backlog() == 2 and announced(rig.ledger) == [
        ("entitlement.threshold_reached", 50),
    ]  # fmt: skip
    assert rig.restarted().sweep() == 2
    assert rig.touched.backlog() == 0
    assert sorted((n.customer, n.data["threshold"]) for n in rig.ledger.announced) == [
        ("a", 50), ("b", 50), ("b", 80),
    ]  # fmt: skip


def test_current_many_answers_as_current_also_when_the_view_is_not_ready(rig: Rig) -> None:
    rig.subs.put(Subscription(1, "c", "basic"))
    period = rig.service.evaluate(1, "c", "api_calls").period
    assert period is not None
    rig.count("c", 7)
    reads = [("c", "api_calls", period), ("c", "seats", period), ("d", "api_calls", period)]
    one_by_one = [rig.service._current(1, c, m, p) for c, m, p in reads]
    assert rig.service.current_many(1, reads) == one_by_one == [7, 0, 0]
    rig.view.flush()  # not ready: each probe is asked again with what Postgres counts
    assert rig.service.current_many(1, reads) == [
        rig.service._current(1, c, m, p) for c, m, p in reads
    ]


def test_passes_take_at_most_a_quarter_of_a_core() -> None:
    sweep = UsageNoticeSweep(MemoryTouched(), lambda _t, _c: None, interval_s=1.0)
    assert sweep.pause_after(0.1) == pytest.approx(0.9)  # the interval
    assert sweep.pause_after(2.0) == pytest.approx(6.0)  # 2 s of work, then 6 s of rest
