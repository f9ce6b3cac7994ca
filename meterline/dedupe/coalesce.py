"""A deduper wrapper that merges concurrent calls into one store call per tenant.

Under load many requests check a few ids each, and mark a few once their events are accepted;
a store round trip costs far more than its keys (the CPU of a loopback round trip on both
sides, a script call in Redis). While one call for a tenant is in flight, later calls queue
up, and the next store call carries all of them, checks and marks together
(`Deduper.exchange`: marks first, so a check in the same call sees them). So round trips per
second stay bounded whatever the request rate. Answers are split back to each caller in
order. Runs on one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from meterline.dedupe.base import Deduper


@dataclass
class _Queue:
    """What waits for the next store call of one tenant."""

    marks: list[str] = field(default_factory=list)
    marked: list[asyncio.Future[list[bool | None]]] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    checked: list[tuple[int, asyncio.Future[list[bool | None]]]] = field(default_factory=list)
    drainer: asyncio.Task[None] | None = None

    def __bool__(self) -> bool:
        return bool(self.marked or self.checked)


class CoalescingDeduper(Deduper):
    """Wraps any deduper; same contract, fewer round trips under concurrency."""

    def __init__(self, inner: Deduper) -> None:
        self.window_s = inner.window_s
        self._inner = inner
        self._queues: dict[int, _Queue] = {}

    async def seen(self, tenant_id: int, ids: Sequence[str]) -> list[bool | None]:
        queue, future = self._join(tenant_id)
        queue.checks.extend(ids)
        queue.checked.append((len(ids), future))
        return await future

    async def mark(self, tenant_id: int, ids: Sequence[str]) -> None:
        queue, future = self._join(tenant_id)
        queue.marks.extend(ids)
        queue.marked.append(future)
        await future

    def _join(self, tenant_id: int) -> tuple[_Queue, asyncio.Future[list[bool | None]]]:
        loop = asyncio.get_running_loop()
        queue = self._queues.get(tenant_id)
        if queue is None:  # nothing in flight for this tenant: start draining
            queue = self._queues[tenant_id] = _Queue()
            queue.drainer = loop.create_task(self._drain(tenant_id, queue))
        return queue, loop.create_future()

    async def _drain(self, tenant_id: int, queue: _Queue) -> None:
        """Send what waits, one store call at a time, until nothing does. (It starts after the
        caller that created the queue has joined it.)"""
        while queue:
            batch = _Queue(queue.marks, queue.marked, queue.checks, queue.checked)
            queue.marks, queue.marked, queue.checks, queue.checked = [], [], [], []
            try:
                flags = await self._inner.exchange(tenant_id, batch.marks, batch.checks)
            except Exception as exc:  # handed to every caller of this merged call
                _fail(batch, exc)
                continue
            _answer(batch, flags)
        del self._queues[tenant_id]

    async def ping(self) -> bool:
        return await self._inner.ping()

    async def close(self) -> None:
        await self._inner.close()


def _answer(batch: _Queue, flags: list[bool | None]) -> None:
    for future in batch.marked:
        if not future.done():
            future.set_result([])
    at = 0
    for n, future in batch.checked:
        if not future.done():
            future.set_result(flags[at : at + n])
        at += n


def _fail(batch: _Queue, exc: Exception) -> None:
    for future in [*batch.marked, *(f for _, f in batch.checked)]:
        if not future.done():
            future.set_exception(exc)
