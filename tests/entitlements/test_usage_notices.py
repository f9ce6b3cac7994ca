"""The detector of counted usage with in-memory parts: the memory view marks the customers a
batch changed (as the aggregator's APPLY does in Redis), `UsageNoticeSweep` decides them with
`EntitlementService.announce_usage`, and each notice is recorded once whoever sees it first."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

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
from meterline.entitlements.thresholds import Notifier
from meterline.entitlements.usage_notices import UsageNoticeSweep
from meterline.view import Delta, MemoryUsageView
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
        self.service = EntitlementService(
            self.catalogs, self.subs, MemoryGrantRepository(MemoryCustomerRepository()),
            ViewUsage(self.view), self.view, Publisher(), MemoryAnswerStore(), self.clock,
            notifier=Notifier(self.ledger),
        )  # fmt: skip
        self.sweep = UsageNoticeSweep(self.touched, self.service.announce_usage, batch=2)

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


def test_a_customer_past_its_last_threshold_is_not_decided_again(rig: Rig) -> None:
    reads: list[str] = []
    current = rig.service._current

    def counting(*args: object) -> Decimal:
        reads.append(str(args[1]))
        return current(*args)  # type: ignore[arg-type]

    rig.service._current = counting  # type: ignore[method-assign]
    rig.count("c", 60)
    rig.count("d", 10)
    rig.sweep.sweep()
    rig.count("c", 1)
    rig.count("d", 1)
    rig.sweep.sweep()
    assert reads == ["c", "d", "d"]  # c's 50/80/100 are recorded: nothing left to read for


def test_passes_take_at_most_a_quarter_of_a_core() -> None:
    sweep = UsageNoticeSweep(MemoryTouched(), lambda _t, _c: None, interval_s=1.0)
    assert sweep.pause_after(0.1) == pytest.approx(0.9)  # the interval
    assert sweep.pause_after(2.0) == pytest.approx(6.0)  # 2 s of work, then 6 s of rest
