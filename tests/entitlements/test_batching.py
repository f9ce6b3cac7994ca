"""`ConsumeBatcher`: consumes that arrive while earlier batches are decided go together into
the next batch; each caller gets its own outcome as soon as it is known."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest

from entitlements_api.batching import ConsumeBatcher
from meterline.entitlements import EntitlementService
from meterline.entitlements.consume import ConsumeAsk, OnOutcomes, Outcome
from meterline.errors import Unavailable


class Service:
    """Answers each ask (200, {"id": event_id}) after `delay`; an event_id "bad" fails alone,
    "boom" makes the whole call raise; "slow" is answered `late` seconds after the others."""

    def __init__(self, delay: float = 0.02, late: float = 0.0) -> None:
        self.batches: list[list[object]] = []
        self.delay, self.late = delay, late
        self.running = self.most = 0
        self._lock = threading.Lock()

    def consume_many(self, asks: Sequence[ConsumeAsk], on_outcomes: OnOutcomes) -> list[Outcome]:
        self.batches.append([a.event_id for a in asks])
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return self._decide(asks, on_outcomes)
        finally:
            with self._lock:
                self.running -= 1

    def _decide(self, asks: Sequence[ConsumeAsk], on_outcomes: OnOutcomes) -> list[Outcome]:
        time.sleep(self.delay)
        if any(a.event_id == "boom" for a in asks):
            raise RuntimeError("the batch failed")
        outcomes: list[Outcome] = []
        for i, a in enumerate(asks):
            if a.event_id == "slow":
                time.sleep(self.late)
            outcome: Outcome = (
                Unavailable("retry") if a.event_id == "bad" else (200, {"id": a.event_id})
            )
            on_outcomes([(i, outcome)])
            outcomes.append(outcome)
        return outcomes


def batcher(service: Service, concurrency: int = 1) -> ConsumeBatcher:
    lane = ThreadPoolExecutor(4, thread_name_prefix="consume")
    return ConsumeBatcher(cast(EntitlementService, service), lane, concurrency)


def ask(event_id: str) -> ConsumeAsk:
    return ConsumeAsk(1, "c1", "api_calls", 1, event_id)


async def _all(b: ConsumeBatcher, ids: list[str]) -> list[Any]:
    return await asyncio.gather(*(b.consume(ask(i)) for i in ids), return_exceptions=True)


def test_consumes_arriving_during_a_batch_form_the_next_one() -> None:
    service = Service()

    async def run() -> list[Any]:
        b = batcher(service)
        first = asyncio.ensure_future(b.consume(ask("a")))
        await asyncio.sleep(0.005)  # "a" is being decided
        rest = await _all(b, ["b", "c", "d"])
        return [await first, *rest]

    answers = asyncio.run(run())
    assert answers == [(200, {"id": i}) for i in "abcd"]
    assert service.batches == [["a"], ["b", "c", "d"]]


def test_batches_run_side_by_side_up_to_the_concurrency() -> None:
    service = Service(delay=0.05)

    async def run() -> None:
        b = batcher(service, concurrency=2)
        first = asyncio.ensure_future(b.consume(ask("a")))
        await asyncio.sleep(0.005)
        second = asyncio.ensure_future(b.consume(ask("b")))
        await asyncio.sleep(0.005)
        await _all(b, ["c", "d"])  # both slots busy: they wait, together
        await asyncio.gather(first, second)

    asyncio.run(run())
    assert service.batches == [["a"], ["b"], ["c", "d"]]
    assert service.most == 2


def test_each_caller_gets_its_own_outcome_and_a_failed_batch_fails_its_callers() -> None:
    service = Service()

    async def run() -> tuple[list[Any], list[Any]]:
        b = batcher(service)
        mixed = await _all(b, ["a", "bad"])
        failed = await _all(b, ["x", "boom"])
        return mixed, failed

    mixed, failed = asyncio.run(run())
    assert mixed[0] == (200, {"id": "a"}) and isinstance(mixed[1], Unavailable)
    assert all(isinstance(f, RuntimeError) for f in failed)


def test_a_caller_is_answered_before_a_slow_neighbour_of_its_batch() -> None:
    service = Service(delay=0.0, late=0.2)

    async def run() -> int:
        b = batcher(service)
        quick = asyncio.ensure_future(b.consume(ask("a")))
        slow = asyncio.ensure_future(b.consume(ask("slow")))
        await quick
        running = service.running  # the batch is still deciding "slow"
        await slow
        return running

    assert asyncio.run(run()) == 1
    assert service.batches == [["a", "slow"]]


@pytest.mark.parametrize("size", [1, 3])
def test_a_batch_holds_at_most_max_size(size: int) -> None:
    service = Service(delay=0.01)

    async def run() -> None:
        lane = ThreadPoolExecutor(2)
        b = ConsumeBatcher(cast(EntitlementService, service), lane, 1, max_size=size)
        await _all(b, [str(n) for n in range(7)])

    asyncio.run(run())
    assert max(len(batch) for batch in service.batches) == size
    assert sorted(i for batch in service.batches for i in batch) == sorted(map(str, range(7)))
