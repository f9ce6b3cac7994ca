"""Consumes decided in batches (`EntitlementService.consume_many`), with in-memory parts: each
consume of a batch gets the answer it would get alone, in arrival order."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest

from meterline.catalog import MemoryCatalogRepository
from meterline.clock import FakeClock
from meterline.entitlements import (
    EntitlementService,
    MemoryAnswerStore,
    MemoryCustomerRepository,
    MemoryGrantRepository,
    MemorySubscriptionRepository,
    ViewUsage,
)
from meterline.entitlements.consume import ConsumeAsk, Outcome
from meterline.entitlements.ids import MemoryIngestedIds
from meterline.entitlements.repository import ConsumeEvent
from meterline.errors import NotFound, Unavailable, ValidationFailed
from meterline.events import UsageEvent
from meterline.view import MemoryUsageView
from tests.entitlements.catalogs import small_catalog


class Publisher:
    def __init__(self) -> None:
        self.calls: list[list[UsageEvent]] = []
        self.fail = False

    def publish(self, events: list[UsageEvent], timeout: float = 10.0) -> None:
        if self.fail:
            raise TimeoutError("no acknowledgement")
        self.calls.append(list(events))

    @property
    def ids(self) -> list[str]:
        return [e.id for call in self.calls for e in call]


@dataclass
class Parts:
    service: EntitlementService
    publisher: Publisher
    answers: MemoryAnswerStore
    ingested: MemoryIngestedIds


@pytest.fixture
def parts() -> Parts:
    clock = FakeClock(datetime(2026, 11, 18, 12, tzinfo=UTC))
    catalogs = MemoryCatalogRepository()
    catalogs.apply(1, small_catalog())
    customers = MemoryCustomerRepository()
    view = MemoryUsageView(clock)
    publisher, answers, ingested = Publisher(), MemoryAnswerStore(), MemoryIngestedIds()
    subs, grants = MemorySubscriptionRepository(), MemoryGrantRepository(customers)
    service = EntitlementService(
        catalogs, subs, grants, ViewUsage(view), view, publisher, answers, clock, None, ingested
    )
    return Parts(service, publisher, answers, ingested)


def ask(event_id: object, amount: object = 1, customer: str = "c1", feature: str = "api_calls"):
    return ConsumeAsk(1, customer, feature, amount, event_id)


def statuses(outcomes: list[Outcome]) -> list[object]:
    return [o[0] if isinstance(o, tuple) else type(o) for o in outcomes]


def test_a_batch_grants_exactly_the_limit_in_arrival_order_and_publishes_once(
    parts: Parts,
) -> None:
    outcomes = parts.service.consume_many([ask(f"e{n}") for n in range(60)])
    assert statuses(outcomes) == [200] * 50 + [403] * 10
    refused = outcomes[-1]
    assert isinstance(refused, tuple) and refused[1]["reason"] == "limit_exceeded"
    assert [o[1]["used"] for o in outcomes[:3] if isinstance(o, tuple)] == [1, 2, 3]
    assert len(parts.publisher.calls) == 1 and len(parts.publisher.ids) == 50
    assert parts.service.consume(1, "c1", "api_calls", 1, "e0") == outcomes[0]
    assert parts.service.check(1, "c1", "api_calls").used == 50


def test_each_consume_of_a_batch_keeps_its_own_answer(parts: Parts) -> None:
    parts.ingested.mark(1, "ingested-1")
    outcomes = parts.service.consume_many(
        [
            ask("a", 10),
            ask("b", "10"),  # a string: refused as ingest refuses it
            ask("c", 1, feature="nope"),
            ask("a", 30),  # a repeat in the same batch: the first answer
            ask("ingested-1"),
            ask("d", 41),  # 10 + 41 > 50
            ask("e", 5, customer="c2"),
        ]
    )
    assert statuses(outcomes) == [200, ValidationFailed, NotFound, 200, 409, 403, 200]
    assert outcomes[3] == outcomes[0]
    assert parts.publisher.ids == ["a", "e"]
    assert parts.service.check(1, "c1", "api_calls").used == 10


def test_a_failed_publish_answers_each_grant_of_the_batch_503_and_keeps_it(parts: Parts) -> None:
    parts.publisher.fail = True
    outcomes = parts.service.consume_many([ask("a", 20), ask("b", 20), ask("c", 20)])
    assert statuses(outcomes) == [Unavailable, Unavailable, 403]
    assert parts.service.check(1, "c1", "api_calls").used == 40  # kept: fates unknown
    parts.publisher.fail = False
    again = parts.service.consume_many([ask("b", 1), ask("a", 1)])
    assert [o[1]["used"] for o in again if isinstance(o, tuple)] == [40, 20]
    assert sorted(parts.publisher.ids) == ["a", "b"]


def test_a_consume_waiting_for_another_claim_does_not_hold_its_batch_back(parts: Parts) -> None:
    assert parts.answers.claim(1, "held", ConsumeEvent("c1", "api_calls", 2, 1_000), 30.0).owner
    parts.service.options = replace(parts.service.options, claim_wait_s=0.2)
    answered: list[tuple[int, float]] = []
    start = time.monotonic()
    outcomes = parts.service.consume_many(
        [ask("held"), ask("free")],
        lambda known: answered.extend((i, time.monotonic() - start) for i, _ in known),
    )
    assert statuses(outcomes) == [Unavailable, 200]
    assert [i for i, _ in answered] == [1, 0]
    assert answered[0][1] < 0.1 <= answered[1][1]


def test_a_failed_answers_statement_marks_nothing_and_a_retry_grants_and_publishes(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving that keeps the dedupe mark after the answers are stored: had the ids
    been marked with their reservations, ingest would refuse them and the retry answer 409."""

    def down(rows: object) -> object:
        raise Unavailable("answers statement failed")

    with monkeypatch.context() as m:
        m.setattr(parts.answers, "decide_many", down)
        failed = parts.service.consume_many([ask("x1"), ask("x2")])
    assert statuses(failed) == [Unavailable, Unavailable]
    assert parts.ingested.ids == set() and parts.publisher.ids == []
    retried = parts.service.consume_many([ask("x1"), ask("x2")])
    assert statuses(retried) == [200, 200]
    assert parts.publisher.ids == ["x1", "x2"] and parts.ingested.ids == {(1, "x1"), (1, "x2")}
    assert parts.service.check(1, "c1", "api_calls").used == 2
