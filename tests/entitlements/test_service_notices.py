"""The service's notices with in-memory parts: thresholds from the catalog, nothing lost when
recording them fails (the consume answers 503; its retry records them), checks too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meterline.catalog import MemoryCatalogRepository, load_catalog
from meterline.clock import FakeClock
from meterline.entitlements import (
    EntitlementService,
    MemoryAnswerStore,
    MemoryCustomerRepository,
    MemoryGrantRepository,
    MemorySubscriptionRepository,
    ViewUsage,
)
from meterline.entitlements.thresholds import MemoryNoticeLedger, Notice, Notifier
from meterline.errors import Unavailable
from meterline.view import MemoryUsageView
from tests.entitlements.catalogs import SMALL_YAML
from tests.entitlements.test_service import Publisher


class FlakyLedger(MemoryNoticeLedger):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def record(self, found: list[Notice]) -> int:  # type: ignore[override]
        if self.down:
            raise OSError("postgres is gone")
        return super().record(found)


@pytest.fixture
def ledger() -> FlakyLedger:
    return FlakyLedger()


@pytest.fixture
def service(ledger: FlakyLedger) -> EntitlementService:
    clock = FakeClock(datetime(2026, 11, 18, 12, tzinfo=UTC))
    catalogs = MemoryCatalogRepository()
    yaml = SMALL_YAML.replace("  - key: free\n", "  - key: free\n    notify_at: [50, 80, 100]\n")
    catalogs.apply(1, load_catalog(yaml))
    view = MemoryUsageView(clock)
    grants = MemoryGrantRepository(MemoryCustomerRepository())
    return EntitlementService(
        catalogs, MemorySubscriptionRepository(), grants, ViewUsage(view), view, Publisher(),
        MemoryAnswerStore(), clock, notifier=Notifier(ledger),
    )  # fmt: skip


def announced(ledger: MemoryNoticeLedger) -> list[tuple[str, object]]:
    return [(n.type, n.data.get("threshold")) for n in ledger.announced]


def test_consumes_announce_each_threshold_once_and_the_refusal(service, ledger) -> None:
    for k in range(5):
        assert service.consume(1, "c", "api_calls", 10, f"e{k}")[0] == 200  # 50 of 50
    assert service.consume(1, "c", "api_calls", 1, "e5")[0] == 403
    assert service.consume(1, "c", "api_calls", 1, "e6")[0] == 403
    assert announced(ledger) == [
        ("entitlement.threshold_reached", 50), ("entitlement.threshold_reached", 80),
        ("entitlement.threshold_reached", 100), ("entitlement.limit_exceeded", None),
    ]  # fmt: skip


def test_a_failed_record_answers_503_and_the_retry_records(service, ledger) -> None:
    ledger.down = True
    with pytest.raises(Unavailable):
        service.consume(1, "c", "api_calls", 30, "e1")
    assert ledger.announced == []
    ledger.down = False
    status, body = service.consume(1, "c", "api_calls", 30, "e1")
    assert (status, body["used"]) == (200, 30)
    assert announced(ledger) == [("entitlement.threshold_reached", 50)]


def test_a_check_announces_what_it_sees_and_a_failure_does_not_fail_it(service, ledger) -> None:
    ledger.down = True
    with pytest.raises(Unavailable):
        service.consume(1, "c", "api_calls", 45, "e1")  # granted and stored: 90%
    assert service.check(1, "c", "api_calls").used == 45  # the check answers all the same
    assert ledger.announced == []
    ledger.down = False
    service.invalidate(1, "c")
    assert service.check(1, "c", "api_calls").used == 45
    assert announced(ledger) == [
        ("entitlement.threshold_reached", 50), ("entitlement.threshold_reached", 80),
    ]  # fmt: skip
