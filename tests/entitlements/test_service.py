"""The service with in-memory parts: consume semantics, publish failure, caches."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from meterline.catalog import Aggregation, MemoryCatalogRepository, load_catalog
from meterline.clock import FakeClock, to_ms
from meterline.entitlements import (
    EntitlementService,
    FallbackUsage,
    MemoryAnswerStore,
    MemoryCustomerRepository,
    MemoryGrantRepository,
    MemorySubscriptionRepository,
    NewGrant,
    RollupUsage,
    Subscription,
    ViewUsage,
)
from meterline.entitlements.invalidation import MemoryChangeHub
from meterline.entitlements.repository import ConsumeEvent
from meterline.errors import NotFound, Unavailable, ValidationFailed
from meterline.events import UsageEvent
from meterline.usage import MemoryUsageQuery
from meterline.view import Delta, MemoryUsageView
from tests.entitlements.catalogs import small_catalog


class Publisher:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []
        self.attempts: list[int] = []
        self.fail = False

    def publish(self, events: list[UsageEvent], timeout: float = 10.0) -> None:
        self.attempts.extend(e.timestamp_ms for e in events)
        if self.fail:
            raise Unavailable("the broker did not acknowledge in time")
        self.events.extend(events)


@pytest.fixture
def parts() -> dict[str, object]:
    clock = FakeClock(datetime(2026, 11, 18, 12, tzinfo=UTC))
    catalogs = MemoryCatalogRepository()
    catalogs.apply(1, small_catalog())
    customers = MemoryCustomerRepository()
    view = MemoryUsageView(clock)
    publisher = Publisher()
    subs = MemorySubscriptionRepository()
    grants = MemoryGrantRepository(customers)
    answers = MemoryAnswerStore()
    service = EntitlementService(
        catalogs, subs, grants, ViewUsage(view), view, publisher, answers, clock
    )
    return {
        "service": service,
        "publisher": publisher,
        "subs": subs,
        "grants": grants,
        "customers": customers,
        "clock": clock,
        "answers": answers,
        "view": view,
        "catalogs": catalogs,
    }


def test_consume_publishes_an_ordinary_event_and_replays_answers(parts: dict[str, object]) -> None:
    service, publisher = parts["service"], parts["publisher"]
    assert isinstance(service, EntitlementService) and isinstance(publisher, Publisher)
    status, body = service.consume(1, "c1", "api_calls", 40, "e1")
    assert (status, body["granted"], body["used"]) == (200, True, 40)
    event = publisher.events[0]
    assert (event.id, event.meter, event.value, event.properties) == (
        "e1",
        "api_calls",
        40.0,
        {"meterline_reservation": True},
    )
    assert service.consume(1, "c1", "api_calls", 40, "e1") == (status, body)
    assert len(publisher.events) == 1
    refused = service.consume(1, "c1", "api_calls", 11, "e2")
    assert refused[0] == 403 and refused[1]["reason"] == "limit_exceeded"
    assert service.check(1, "c1", "api_calls").used == 40


def test_a_failed_publish_keeps_the_reservation_and_the_retry_republishes_it(
    parts: dict[str, object],
) -> None:
    service, publisher, clock = parts["service"], parts["publisher"], parts["clock"]
    assert isinstance(service, EntitlementService) and isinstance(publisher, Publisher)
    assert isinstance(clock, FakeClock)
    publisher.fail = True
    with pytest.raises(Unavailable):
        service.consume(1, "c1", "api_calls", 50, "e1")
    assert service.check(1, "c1", "api_calls").used == 50
    assert service.consume(1, "c1", "api_calls", 1, "e2")[0] == 403
    publisher.fail = False
    clock.advance(13 * 3600)  # the retry is on the next UTC day: the event keeps its first time
    status, body = service.consume(1, "c1", "api_calls", 7, "e1")
    assert (status, body["used"]) == (200, 50)
    (event,) = publisher.events
    assert (event.id, event.value, event.timestamp_ms) == ("e1", 50.0, publisher.attempts[0])


def test_a_concurrent_consume_waits_for_the_first_answer_or_takes_over_a_lapsed_claim(
    parts: dict[str, object],
) -> None:
    service, publisher, answers = parts["service"], parts["publisher"], parts["answers"]
    assert isinstance(service, EntitlementService) and isinstance(publisher, Publisher)
    assert isinstance(answers, MemoryAnswerStore)
    first = ConsumeEvent("c1", "api_calls", 9.0, 1_000)
    assert answers.claim(1, "e1", first, 30.0).owner
    service.options = replace(service.options, claim_wait_s=0.05)
    with pytest.raises(Unavailable):
        service.consume(1, "c1", "api_calls", 2, "e1")
    service.options = replace(service.options, claim_lease_s=0.0)
    status, body = service.consume(1, "c1", "api_calls", 2, "e1")
    assert (status, body["used"]) == (200, 9)
    assert [(e.value, e.timestamp_ms) for e in publisher.events] == [(9.0, 1_000)]


def test_a_failed_decision_gives_the_claim_up_for_the_retry(parts: dict[str, object]) -> None:
    service, clock = parts["service"], parts["clock"]
    assert isinstance(service, EntitlementService) and isinstance(clock, FakeClock)
    first_ms = clock.now_ms()
    healthy = service._view
    service._view = None  # type: ignore[assignment]  # any error while deciding
    with pytest.raises(AttributeError):
        service.consume(1, "c1", "api_calls", 5, "e1")
    service._view = healthy
    clock.advance(60)
    status, body = service.consume(1, "c1", "api_calls", 7, "e1")
    assert (status, body["used"]) == (200, 5)
    publisher = parts["publisher"]
    assert isinstance(publisher, Publisher)
    assert [(e.value, e.timestamp_ms) for e in publisher.events] == [(5.0, first_ms)]


def test_consume_rejects_bad_input_and_unknown_features(parts: dict[str, object]) -> None:
    service = parts["service"]
    assert isinstance(service, EntitlementService)
    with pytest.raises(ValidationFailed) as bad:
        service.consume(1, "c1", "api_calls", -1, "")
    assert {e.field for e in bad.value.errors} == {"amount", "event_id"}
    with pytest.raises(NotFound):
        service.consume(1, "c1", "nope", 1, "e")
    with pytest.raises(ValidationFailed):
        service.consume(1, "c1", "export", 1, "e")
    with pytest.raises(NotFound):
        service.check(2, "c1", "api_calls")


def test_changes_invalidate_cached_plan_data(parts: dict[str, object]) -> None:
    service, subs, grants, customers = (
        parts["service"],
        parts["subs"],
        parts["grants"],
        parts["customers"],
    )
    assert isinstance(service, EntitlementService)
    assert service.check(1, "c1", "api_calls").limit == 50
    subs.put(Subscription(1, "c1", "basic"))  # type: ignore[attr-defined]
    assert service.check(1, "c1", "api_calls").limit == 50  # cached until invalidated
    service.invalidate(1, "c1")
    assert service.check(1, "c1", "api_calls").limit == 1000
    customers.create(1, "c1", None, None)  # type: ignore[attr-defined]
    since = datetime(2026, 11, 1, tzinfo=UTC)
    grants.add(1, NewGrant("c1", "api_calls", "top_up", 500, since))  # type: ignore[attr-defined]
    service.invalidate(1, "c1")
    assert service.check(1, "c1", "api_calls").limit == 1500


def test_a_view_found_not_ready_is_decided_from_the_rollups_whatever_readiness_was_cached() -> None:
    clock = FakeClock(datetime(2026, 11, 18, 12, tzinfo=UTC))
    catalogs = MemoryCatalogRepository()
    catalogs.apply(1, small_catalog())
    view, rollups = MemoryUsageView(clock), MemoryUsageQuery()
    usage = FallbackUsage(view, ViewUsage(view), RollupUsage(rollups), ready_ttl=60.0)
    subs, grants = MemorySubscriptionRepository(), MemoryGrantRepository(MemoryCustomerRepository())
    service = EntitlementService(
        catalogs, subs, grants, usage, view, Publisher(), MemoryAnswerStore(), clock
    )
    minute = clock.now().replace(minute=0)
    rollups.add(1, "c1", "api_calls", Aggregation.SUM, minute, 40.0, 1, clock.now_ms())
    view.apply([Delta(1, "c1", "api_calls", Aggregation.SUM, to_ms(minute), 40.0, 1, 0)], [])
    assert usage.view_ready()  # cached for a minute
    view.flush()
    assert service.check(1, "c1", "api_calls").used == 40
    assert service.consume(1, "c1", "api_calls", 11, "e1")[0] == 403
    assert service.consume(1, "c1", "api_calls", 10, "e2")[0] == 200


def test_a_consume_in_a_periods_last_seconds_is_stamped_and_held_at_its_attributed_instant(
    parts: dict[str, object],
) -> None:
    """A billing period ending at 12:00:30: the minute 12:00 belongs to the next period, so a
    consume at 12:00:10 is attributed to 11:59:59.999, and its retry a minute later (the next
    period by then) publishes that same instant and keeps the reservation in its period."""
    service, publisher, clock = parts["service"], parts["publisher"], parts["clock"]
    subs, view = parts["subs"], parts["view"]
    assert isinstance(service, EntitlementService) and isinstance(publisher, Publisher)
    assert isinstance(clock, FakeClock) and isinstance(view, MemoryUsageView)
    start = datetime(2026, 10, 18, 12, 0, 30, tzinfo=UTC)
    end = datetime(2026, 11, 18, 12, 0, 30, tzinfo=UTC)
    subs.put(Subscription(1, "c1", "power", current_period_start=start, current_period_end=end))  # type: ignore[attr-defined]
    clock.advance(10)
    publisher.fail = True
    with pytest.raises(Unavailable):
        service.consume(1, "c1", "api_calls", 5, "e1")
    at = to_ms(end) - 30_001
    assert publisher.attempts == [at]
    publisher.fail = False
    clock.advance(60)
    assert service.consume(1, "c1", "api_calls", 5, "e1")[0] == 200
    assert [(e.value, e.timestamp_ms) for e in publisher.events] == [(5.0, at)]
    held = view.reserve(1, "c1", "api_calls", "probe", 0, -1, to_ms(start), to_ms(end), at)
    assert held.pending == 5


ADDITIVE_YAML = """
meters:
  - {key: calls, aggregation: count}
  - {key: peak, aggregation: max}
  - {key: last, aggregation: latest}
features:
  - {key: calls, kind: metered, meter: calls}
  - {key: peak, kind: metered, meter: peak}
  - {key: last, kind: metered, meter: last}
plans:
  - key: free
    default: true
    features:
      calls: {limit: 2, reset: month, overage: block}
      peak: {limit: 10, reset: month, overage: block}
      last: {limit: 10, reset: month, overage: block}
"""


def test_consume_reserves_only_what_its_event_will_count(parts: dict[str, object]) -> None:
    """A consume's reservation is released by its event being counted, so it must reserve what
    that event adds: its amount on a sum meter, 1 on a count meter; a max or latest meter has no
    amount to add (a reservation of 7 on a max meter would be counted as 7 used)."""
    service, catalogs = parts["service"], parts["catalogs"]
    assert isinstance(service, EntitlementService)
    assert isinstance(catalogs, MemoryCatalogRepository)
    catalogs.apply(1, load_catalog(ADDITIVE_YAML))
    service.invalidate(1)
    for feature in ("peak", "last"):
        with pytest.raises(ValidationFailed) as refused:
            service.consume(1, "c1", feature, 7, f"{feature}-1")
        assert [e.field for e in refused.value.errors] == ["feature"]
    with pytest.raises(ValidationFailed) as refused:
        service.consume(1, "c1", "calls", 3, "calls-1")
    assert [e.field for e in refused.value.errors] == ["amount"]
    assert service.consume(1, "c1", "calls", 1, "calls-2")[1]["used"] == 1
    assert service.consume(1, "c1", "calls", 1, "calls-3")[1]["used"] == 2
    assert service.consume(1, "c1", "calls", 1, "calls-4")[0] == 403


def test_a_change_through_one_replica_drops_the_other_replicas_cached_answers(
    parts: dict[str, object],
) -> None:
    """Two services on shared repositories and view (two replicas) and one change feed: what
    one changes (a subscription a webhook synced, a consume) the other answers at once."""
    hub = MemoryChangeHub()
    a, b = _replica(parts, hub), _replica(parts, hub)
    assert b.check(1, "c1", "api_calls").limit == 50  # cached on b
    parts["subs"].put(Subscription(1, "c1", "basic"))  # type: ignore[attr-defined]
    a.invalidate(1, "c1")  # what SubscriptionSync and the admin routes call after a change
    assert b.check(1, "c1", "api_calls").limit == 1000
    assert b.check(1, "c1", "api_calls").used == 0  # cached on b
    status, _ = a.consume(1, "c1", "api_calls", 400, "e1")
    assert status == 200
    assert b.check(1, "c1", "api_calls").used == 400


def _replica(parts: dict[str, object], hub: MemoryChangeHub) -> EntitlementService:
    p, feed = parts, hub.feed()
    service = EntitlementService(
        p["catalogs"], p["subs"], p["grants"], ViewUsage(p["view"]), p["view"],  # type: ignore[arg-type]
        p["publisher"], p["answers"], p["clock"], changes=feed,  # type: ignore[arg-type]
    )  # fmt: skip
    feed.listen(service)
    return service
