"""Concurrent consumes decided together: the group commit of the consume route.

A consume waits on Postgres (claim, answer), Redis (dedupe store, reservation) and the broker's
acknowledgement. Decided one by one, each request pays every round trip and its thread's
hand-offs of the interpreter lock; most of its CPU was that overhead. `ConsumeBatcher` gives the
consumes that arrive while earlier ones are being decided to `EntitlementService.consume_many`
as one batch, in a worker thread: one statement, one script call, one pipeline, one publish for
the whole batch (meterline/entitlements/consume.py), each consume still its own answer.

At most `concurrency` batches are in flight. A consume that arrives while fewer are starts a
batch on the loop's next turn (with whatever else arrived in that turn), so a lone consume is
not delayed; under load the batches grow by themselves with the arrival rate, and the cost per
consume falls as the load rises. A batch holds at most `max_size` consumes. Each caller is
answered as soon as its own outcome is known (`on_outcomes`, one wake-up of the loop per group
of outcomes), not at the end of its batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from meterline.entitlements import EntitlementService
from meterline.entitlements.consume import ConsumeAsk, Outcome

Answered = tuple[int, dict[str, Any]]


class ConsumeBatcher:
    """Batches of concurrent consumes on one event loop (`Dependencies.consumes` keeps one
    per loop)."""

    def __init__(
        self,
        service: EntitlementService,
        lane: Executor | None,
        concurrency: int = 2,
        max_size: int = 256,
    ) -> None:
        self._service = service
        self._lane = lane
        self._concurrency = concurrency
        self._max = max_size
        self._queued: list[tuple[ConsumeAsk, asyncio.Future[Answered]]] = []
        self._running = 0
        self._starting = False

    async def consume(self, ask: ConsumeAsk) -> Answered:
        """`service.consume` of `ask`, decided in a batch with the consumes beside it: its
        (status, body), or the error `consume` raises."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answered] = loop.create_future()
        self._queued.append((ask, future))
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._queued and self._running < self._concurrency and not self._starting:
            self._starting = True
            loop.call_soon(self._start, loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._starting = False
        if not self._queued or self._running >= self._concurrency:
            return
        batch, self._queued = self._queued[: self._max], self._queued[self._max :]
        self._running += 1
        futures = [future for _, future in batch]
        asks = [ask for ask, _ in batch]

        def answer(known: list[tuple[int, Outcome]]) -> None:  # on the lane's thread
            loop.call_soon_threadsafe(_resolve_all, futures, known)

        done = loop.run_in_executor(self._lane, self._service.consume_many, asks, answer)
        done.add_done_callback(lambda finished: self._finished(loop, futures, finished))
        self._schedule(loop)

    def _finished(
        self,
        loop: asyncio.AbstractEventLoop,
        futures: Sequence[asyncio.Future[Answered]],
        finished: asyncio.Future[list[Outcome]],
    ) -> None:
        """A batch ended: its callers not answered yet (it raised) get its error."""
        self._running -= 1
        error = None if finished.cancelled() else finished.exception()
        for future in futures:
            if error is not None:
                _resolve(future, error if isinstance(error, Exception) else RuntimeError(error))
        self._schedule(loop)


def _resolve_all(
    futures: Sequence[asyncio.Future[Answered]], known: list[tuple[int, Outcome]]
) -> None:
    for index, outcome in known:
        _resolve(futures[index], outcome)


def _resolve(future: asyncio.Future[Answered], outcome: Outcome) -> None:
    if future.done():  # its caller went away (cancelled), or answered already
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
