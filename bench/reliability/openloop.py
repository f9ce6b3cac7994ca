"""Open-loop traffic: new batches arrive at the planned rate whatever ingest answers.

A closed loop (each connection sends its next batch once the previous one is settled) slows
down as soon as ingest sheds load: a 429 holds its sender for the Retry-After, so the offered
rate sinks towards the capacity it was meant to exceed. `OpenLoop` instead starts a new batch
every `batch / rate` seconds on any free connection of its arrival pool, opening another (up to
`plan.connections`) when none is free, like many independent clients would:

- an arrival connection is free again as soon as its request is answered: the next arrival on
  it stands for another client, which the Retry-After sent to this one does not concern;
- a refused batch is resent unchanged (same ids) after its own wait (the Retry-After, or longer
  by full-jitter exponential backoff up to `plan.max_retry_wait_s`) over a separate, smaller
  retry pool (`plan.connections // 16`, at least 4), oldest first. Its connections stand for
  the clients that were told to wait: after a 429 or 503 one sends nothing until its
  Retry-After is over. The backlog of refused batches grows for as long as the overload lasts;
  the bounded retry pool keeps it from turning into a retry storm that would crowd out the new
  arrivals, and drains it once they stop.

Only when every arrival connection is waiting for an answer does a new batch wait for one; the
offered rate then falls short of the plan, and `Stats.offered_rate` (new events per second of
the arrival window) says by how much.

Not `bench.openloop`: that one probes latency from due times and never retries; this one is a
client population that must deliver every event of its ledger, so it resends, waits and pools.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque

from bench.loadgen import Client, cpu_time
from bench.reliability.ledger import Ledger
from bench.reliability.traffic import Plan, Stats, Traffic


class ConnectionPool:
    """Keep-alive connections handed out one request at a time, to waiters in arrival order;
    with `hold`, a connection answered with a Retry-After is handed out again only after it.
    Not thread-safe: one event loop owns it."""

    def __init__(self, host: str, port: int, timeout: float, limit: int, hold: bool) -> None:
        self.host, self.port, self.timeout, self.limit, self.hold = host, port, timeout, limit, hold
        self.opened = 0
        self._idle: deque[Client] = deque()
        self._waiting: deque[asyncio.Future[Client]] = deque()

    async def acquire(self) -> Client:
        """A free connection: an idle one, a new one below `limit`, else the next released."""
        if self._idle:
            return self._idle.pop()
        if self.opened < self.limit:
            self.opened += 1
            return Client(self.host, self.port, self.timeout)
        future: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        return await future

    def release(self, client: Client, retry_after: float = 0.0) -> None:
        """Give `client`, answered with `retry_after` (0: none), back: to the oldest waiter,
        else to the idle ones."""
        if self.hold and retry_after > 0:
            asyncio.get_running_loop().call_later(retry_after, self._hand_over, client)
        else:
            self._hand_over(client)

    def _hand_over(self, client: Client) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(client)
                return
        self._idle.append(client)

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()


class OpenLoop(Traffic):
    """`Traffic` whose batches arrive at `plan.rate` events/s (required) for `plan.duration_s`
    (or until `plan.events`), over at most `plan.connections` connections. Its batches are
    composed before they start arriving (`_arrivals`)."""

    def __init__(
        self, ledger: Ledger, host: str, port: int, api_key: str, plan: Plan, seed: int = 1
    ) -> None:
        if not plan.rate:
            raise ValueError("an open loop needs a rate")
        super().__init__(ledger, host, port, api_key, plan, seed)
        self._pool = ConnectionPool(host, port, plan.timeout_s, plan.connections, hold=False)
        retry_limit = max(4, plan.connections // 16)
        self._retry_pool = ConnectionPool(host, port, plan.timeout_s, retry_limit, hold=True)

    async def run(self) -> Stats:
        """Offer the plan's batches on schedule; returns when every batch is settled."""
        composing = time.monotonic()
        arrivals = self._arrivals()
        self._t0, cpu0 = time.monotonic(), cpu_time()
        self.stats.compose_s = self._t0 - composing
        batches: set[asyncio.Task[None]] = set()
        for numbers, raw in arrivals:
            self._planned += len(numbers)
            await self._pace()
            asked = time.monotonic()
            client = await self._pool.acquire()
            self.stats.connection_wait_s += time.monotonic() - asked
            task = asyncio.create_task(self._batch(client, numbers, raw))
            batches.add(task)
            task.add_done_callback(batches.discard)
        window = time.monotonic() - self._t0
        self.stats.offered_rate = self._planned / max(window, 1e-9)
        while batches:
            await asyncio.gather(*list(batches))
        await self._pool.close()
        await self._retry_pool.close()
        self.stats.elapsed = time.monotonic() - self._t0
        self.stats.connections = self._pool.opened
        cores = (cpu_time() - cpu0) / max(self.stats.elapsed, 1e-9)
        self.stats.cpu_share = cores / (os.cpu_count() or 1)
        return self.stats

    def _arrivals(self) -> list[tuple[list[int], bytes]]:
        """Every batch of the plan (`plan.events`, or `rate` x `duration_s` if fewer), composed
        and encoded before the clock starts. The generator shares the machine with what it
        loads, and composing is nearly all of its own work (~3 µs a new event): done on the
        way, it kept the loop busy through the whole arrival window at 3x capacity."""
        plan, previous = self.plan, list[int]()
        total = plan.events
        if plan.duration_s and plan.rate:
            total = min(total, int(plan.rate * plan.duration_s))
        arrivals: list[tuple[list[int], bytes]] = []
        for start in range(0, total, plan.batch):
            numbers = self._compose(min(plan.batch, total - start), previous)
            arrivals.append((numbers, self._request(numbers)))
            previous = numbers
        return arrivals

    async def _batch(self, client: Client, numbers: list[int], raw: bytes) -> None:
        first, attempt, pool = time.monotonic(), 0, self._pool
        while True:
            response = await self._attempt(client, raw, numbers)
            retry_after = response.retry_after(-1.0) if response.status in (429, 503) else 0.0
            pool.release(client, retry_after)
            if self._settled(response, first):
                return
            attempt += 1
            await asyncio.sleep(self._wait(response.status, retry_after, attempt))
            pool = self._retry_pool
            client = await pool.acquire()

    def _wait(self, status: int, retry_after: float, attempt: int) -> float:
        """The Retry-After (for 429 and 503), or longer: full-jitter exponential backoff."""
        if status in (429, 503) and retry_after < 0:
            self.stats.retry_after_missing += 1
        backoff = min(0.1 * 2.0**attempt, self.plan.max_retry_wait_s) * self._rng.random()
        return max(retry_after, backoff, 0.01)
