"""The SDK apps use to emit usage: `Meterline` (a background thread) and `AsyncMeterline`.

`record()` returns at once: the event gets its id (UUIDv7) and timestamp immediately, goes into
a bounded buffer, and is sent in batches by size (`batch_size`) and time (`flush_interval`).
Failed sends are retried with the same ids and timestamps, with full-jitter exponential
backoff that honours Retry-After, so an event is never lost to a timeout, 429, 5xx, reset or
a crash of ingest, and the server never counts it twice. Events the server refuses as invalid
are dropped and counted (`stats.rejected`); a full buffer drops per `drop_policy`
(`stats.dropped`). `close()` (also run at interpreter exit) sends what is left, retrying until
its timeout; what is still unsent then is counted in `stats.abandoned`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from meterline_sdk._core import (
    Answer,
    ClientStats,
    DropPolicy,
    Event,
    EventBuffer,
    Verdict,
    backoff,
    encode,
    judge,
    new_event,
)

PATH = "/v1/events"


class _Batches:
    """The retry state of one drained batch: what is left to send and how to react to answers."""

    def __init__(self, batch: list[Event], stats: ClientStats) -> None:
        self.pending = [batch]
        self.attempt = 0
        self.stats = stats

    def next(self) -> list[Event] | None:
        return self.pending[-1] if self.pending else None

    def settle(self, batch: list[Event], answer: Answer) -> bool:
        """Apply an answer; True when `batch` must be retried after a backoff."""
        s = self.stats
        if answer.verdict is Verdict.RETRY:
            s.retries += 1
            s.last_error = answer.error
            return True
        self.pending.pop()
        self.attempt = 0
        if answer.verdict is Verdict.SENT:
            s.accepted += answer.accepted
            s.duplicates += answer.duplicates
        elif answer.verdict is Verdict.SPLIT:
            half = len(batch) // 2
            self.pending += [batch[half:], batch[:half]]
        elif answer.verdict is Verdict.DROP_INVALID:
            s.rejected += len(answer.bad_indexes)
            s.last_error = answer.error
            self.pending.append([e for i, e in enumerate(batch) if i not in answer.bad_indexes])
        else:
            s.rejected += len(batch)
            s.last_error = answer.error
        return False

    def abandon(self) -> None:
        self.stats.abandoned += sum(len(b) for b in self.pending)
        self.pending.clear()


class _Options:
    def __init__(
        self,
        batch_size: int,
        flush_interval: float,
        backoff_base: float,
        backoff_cap: float,
        close_timeout: float,
    ) -> None:
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be between 1 and 1000 (the server's limit)")
        self.batch_size, self.flush_interval = batch_size, flush_interval
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.close_timeout = close_timeout

    def wait(self, batches: _Batches, retry_after: float | None) -> float:
        delay = backoff(batches.attempt, retry_after, self.backoff_base, self.backoff_cap)
        batches.attempt += 1
        return delay


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}


class Meterline:
    """Thread-safe usage emitter; one per process is plenty. See the module docstring.

    `transport` is for tests (an httpx transport); `max_buffered` bounds memory.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_buffered: int = 100_000,
        drop_policy: DropPolicy | str = DropPolicy.OLDEST,
        request_timeout: float = 10.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 10.0,
        close_timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._opt = _Options(batch_size, flush_interval, backoff_base, backoff_cap, close_timeout)
        self.stats = ClientStats()
        self._buffer = EventBuffer(max_buffered, DropPolicy(drop_policy), self.stats)
        self._http = httpx.Client(
            base_url=url, headers=_headers(api_key), timeout=request_timeout, transport=transport
        )
        self._wake, self._closing = threading.Event(), threading.Event()
        self._deadline = math.inf
        self._in_flight = 0
        self._thread = threading.Thread(target=self._run, name="meterline-usage", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def record(
        self,
        customer: str,
        meter: str,
        value: float | Decimal = 1,
        id: str | None = None,
        timestamp: datetime | int | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:
        """Queue one event and return its id at once. Raises RuntimeError after `close`."""
        if self._closing.is_set():
            raise RuntimeError("this Meterline client is closed")
        event = new_event(customer, meter, value, id, timestamp, properties)
        if self._buffer.add(event) >= self._opt.batch_size:
            self._wake.set()
        return str(event["id"])

    def flush(self, timeout: float = 30.0) -> bool:
        """Send everything buffered now; True once nothing is buffered or in flight."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while (len(self._buffer) or self._in_flight) and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.005)
        return not (len(self._buffer) or self._in_flight)

    def close(self, timeout: float | None = None) -> None:
        """Send what is left (retrying up to `timeout`, default `close_timeout`), then stop."""
        if self._closing.is_set():
            return
        atexit.unregister(self.close)
        wait = self._opt.close_timeout if timeout is None else timeout
        self._deadline = time.monotonic() + wait
        self._closing.set()
        self._wake.set()
        self._thread.join(wait + 5.0)
        self._http.close()

    def __enter__(self) -> Meterline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            if not self._closing.is_set():
                self._wake.wait(self._opt.flush_interval)
                self._wake.clear()
            self._drain()
            if self._closing.is_set() and not len(self._buffer):
                return

    def _drain(self) -> None:
        while batch := self._buffer.take(self._opt.batch_size):
            self._in_flight = len(batch)
            self._deliver(_Batches(batch, self.stats))
            self._in_flight = 0

    def _deliver(self, batches: _Batches) -> None:
        while (batch := batches.next()) is not None:
            answer = self._send(batch)
            if batches.settle(batch, answer) and not self._pause(
                self._opt.wait(batches, answer.retry_after)
            ):
                batches.abandon()
                if self._closing.is_set():
                    self.stats.abandoned += len(self._buffer.take(len(self._buffer)))

    def _send(self, batch: list[Event]) -> Answer:
        try:
            r = self._http.post(PATH, content=encode(batch))
        except httpx.HTTPError as exc:
            return Answer(Verdict.RETRY, error=repr(exc))
        return judge(r.status_code, r.headers, r.content, len(batch))

    def _pause(self, seconds: float) -> bool:
        """Sleep before a retry; False when `close`'s deadline comes first (give up)."""
        now = time.monotonic()
        if now + seconds > self._deadline:
            time.sleep(max(0.0, self._deadline - now))
            return False
        if self._closing.is_set():
            time.sleep(seconds)
        else:
            self._closing.wait(seconds)
        return time.monotonic() < self._deadline


class AsyncMeterline:
    """The asyncio variant: `record()` is a plain (non-blocking) call made inside a running
    loop; a task sends in the background. Use `async with` or `await aclose()` to flush at the
    end (interpreter exit cannot await, so nothing is sent for an unclosed client)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_buffered: int = 100_000,
        drop_policy: DropPolicy | str = DropPolicy.OLDEST,
        request_timeout: float = 10.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 10.0,
        close_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._opt = _Options(batch_size, flush_interval, backoff_base, backoff_cap, close_timeout)
        self.stats = ClientStats()
        self._buffer = EventBuffer(max_buffered, DropPolicy(drop_policy), self.stats)
        self._http = httpx.AsyncClient(
            base_url=url, headers=_headers(api_key), timeout=request_timeout, transport=transport
        )
        self._wake, self._closing = asyncio.Event(), asyncio.Event()
        self._deadline = math.inf
        self._in_flight = 0
        self._task: asyncio.Task[None] | None = None

    def record(
        self,
        customer: str,
        meter: str,
        value: float | Decimal = 1,
        id: str | None = None,
        timestamp: datetime | int | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:
        """Queue one event and return its id; must be called with a running event loop."""
        if self._closing.is_set():
            raise RuntimeError("this AsyncMeterline client is closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        event = new_event(customer, meter, value, id, timestamp, properties)
        if self._buffer.add(event) >= self._opt.batch_size:
            self._wake.set()
        return str(event["id"])

    async def flush(self, timeout: float = 30.0) -> bool:
        """Send everything buffered now; True once nothing is buffered or in flight."""
        deadline = time.monotonic() + timeout
        while (len(self._buffer) or self._in_flight) and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.005)
        return not (len(self._buffer) or self._in_flight)

    async def aclose(self, timeout: float | None = None) -> None:
        """Send what is left (retrying up to `timeout`, default `close_timeout`), then stop."""
        if self._closing.is_set():
            return
        wait = self._opt.close_timeout if timeout is None else timeout
        self._deadline = time.monotonic() + wait
        self._closing.set()
        self._wake.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, wait + 5.0)
        await self._http.aclose()

    async def __aenter__(self) -> AsyncMeterline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self) -> None:
        while True:
            if not self._closing.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._opt.flush_interval)
                self._wake.clear()
            await self._drain()
            if self._closing.is_set() and not len(self._buffer):
                return

    async def _drain(self) -> None:
        while batch := self._buffer.take(self._opt.batch_size):
            self._in_flight = len(batch)
            await self._deliver(_Batches(batch, self.stats))
            self._in_flight = 0

    async def _deliver(self, batches: _Batches) -> None:
        while (batch := batches.next()) is not None:
            answer = await self._send(batch)
            if batches.settle(batch, answer) and not await self._pause(
                self._opt.wait(batches, answer.retry_after)
            ):
                batches.abandon()
                if self._closing.is_set():
                    self.stats.abandoned += len(self._buffer.take(len(self._buffer)))

    async def _send(self, batch: list[Event]) -> Answer:
        try:
            r = await self._http.post(PATH, content=encode(batch))
        except httpx.HTTPError as exc:
            return Answer(Verdict.RETRY, error=repr(exc))
        return judge(r.status_code, r.headers, r.content, len(batch))

    async def _pause(self, seconds: float) -> bool:
        now = time.monotonic()
        if now + seconds > self._deadline:
            await asyncio.sleep(max(0.0, self._deadline - now))
            return False
        if self._closing.is_set():
            await asyncio.sleep(seconds)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)
        return time.monotonic() < self._deadline
