"""Open-loop HTTP load: requests offered at a fixed rate, latency from each intended send time.

A closed loop (`bench.loadgen.hammer`: each connection sends its next request when the last one
is answered) measures saturation, but its latencies obey Little's law (latency = connections /
rate) and it slows down whenever the server stalls, so a stall delays few measured requests
("coordinated omission"). Here request `i` of a run is due at `start + i / rate` on connection
`i % connections`, whatever happened before; its latency runs from that due time to the end of
its response. A connection still busy with an earlier request sends the next one as soon as it
is free (HTTP/1.1 keep-alive, one request in flight), so a stall shows up in every request that
was due while it lasted, as it would for the callers of a real service.

The generator is cheap on purpose (it shares the machine with what it measures): an
`asyncio.Protocol` per connection, pre-encoded requests, one timer per request, a minimal
response parser (status line and `Content-Length`), uvloop when installed, the cyclic
garbage collector paused while the run lasts. `OpenLoopResult` reports its own CPU use and how
late it sent (`send_lag`): that lag is counted in the latencies, against the service, so a busy
generator makes the figures worse, never better. `by_second` shows when the slow requests were
due (a stall, a backlog growing all along).

    result = offer("127.0.0.1", 8002, requests, rate=5000, seconds=5, connections=64)
    result.percentile(0.99), result.achieved_rate, result.unfinished, result.cpu_cores
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

from bench.loadgen import HEAD_END, content_length, cpu_time, percentile, run_loop


@dataclass
class OpenLoopResult:
    """What one open-loop run did. Latencies and send lags are in seconds, one per finished
    request; `unfinished` requests got no answer before the drain deadline (their latency is
    at least the time from their due time to that deadline, and counted so). `dues[i]` is when
    the request of `latencies[i]` was due, in seconds after the start (`by_second`)."""

    offered_rate: float
    seconds: float
    connections: int
    latencies: list[float] = field(default_factory=list)
    dues: list[float] = field(default_factory=list)  # due time of each latency, s after start
    send_lags: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    unfinished: int = 0
    elapsed: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def finished(self) -> int:
        return len(self.send_lags)

    @property
    def achieved_rate(self) -> float:
        """Finished requests per second of the whole run (offered span plus drain)."""
        return self.finished / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cpu_cores(self) -> float:
        """The generator's own CPU use, in cores, over the run."""
        return self.cpu_seconds / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, q: float) -> float:
        """The `q` quantile (0..1) of latency from due time, unfinished requests included."""
        return percentile(sorted(self.latencies), q)

    def by_second(self, q: float = 0.99) -> list[tuple[int, int, float]]:
        """(second after the start, requests due in it, their `q` latency quantile) for every
        second of the run: where in the run the slow requests were due (a stall, a slow start,
        a backlog growing all along)."""
        seconds: dict[int, list[float]] = {}
        for due, latency in zip(self.dues, self.latencies, strict=True):
            seconds.setdefault(int(due), []).append(latency)
        return [(s, len(v), percentile(sorted(v), q)) for s, v in sorted(seconds.items())]

    def send_lag(self, q: float) -> float:
        """The `q` quantile of how late requests left after their due time: waiting for the
        connection's previous answer, or the generator itself running late."""
        return percentile(sorted(self.send_lags), q)


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending its share of the schedule, one request at a time."""

    def __init__(self, result: OpenLoopResult, done: asyncio.Future[None]) -> None:
        self._schedule: list[tuple[float, bytes]] = []  # (seconds after start, request)
        self._start = 0.0
        self._next = 0
        self._result = result
        self._done = done
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._in_flight: float | None = None  # due time of the request awaiting its answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def begin(self, start: float, schedule: list[tuple[float, bytes]]) -> None:
        """Send `schedule`'s requests (in due order), each when due (`start` plus its offset,
        `time.perf_counter` seconds) or, if later, as soon as the previous one is answered."""
        self._start, self._schedule = start, schedule
        self._send_when_due()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._next < len(self._schedule) or self._in_flight is not None:
            self._result.errors[type(exc).__name__ if exc else "closed"] += 1
        self._finish()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._in_flight is not None:
            end = self._buffer.find(HEAD_END)
            if end < 0:
                return
            length = content_length(self._buffer[:end])
            if len(self._buffer) < end + 4 + length:
                return
            status = int(self._buffer[9:12])
            self._buffer = self._buffer[end + 4 + length :]
            self._answered(status)

    def _answered(self, status: int) -> None:
        assert self._in_flight is not None
        self._result.latencies.append(time.perf_counter() - self._in_flight)
        self._result.dues.append(self._in_flight - self._start)
        self._result.statuses[status] += 1
        self._in_flight = None
        self._send_when_due()

    def _send_when_due(self) -> None:
        if self._next >= len(self._schedule):
            self._finish()
            return
        delay = self._start + self._schedule[self._next][0] - time.perf_counter()
        if delay > 0:
            self._loop.call_later(delay, self._send)
        else:
            self._send()

    def _send(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        offset, request = self._schedule[self._next]
        due = self._start + offset
        self._next += 1
        self._in_flight = due
        self._result.send_lags.append(max(0.0, time.perf_counter() - due))
        self._transport.write(request)

    def unfinished(self, deadline: float) -> list[tuple[float, float]]:
        """(due time after the start, latency lower bound to `deadline`) of the requests this
        connection never finished."""
        pending = [self._start + offset for offset, _ in self._schedule[self._next :]]
        if self._in_flight is not None:
            pending.append(self._in_flight)
        return [(due - self._start, max(0.0, deadline - due)) for due in pending]

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the measured span. In a process as large as
    the bench runner a full collection takes tens of ms, during which no request is sent or
    read: a pause of the generator, counted against the service. A run allocates few cycles,
    and they are collected once it is over."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def offer_async(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    seconds: float,
    connections: int = 64,
    drain: float = 10.0,
) -> OpenLoopResult:
    """Offer `rate` requests/s for `seconds` over `connections` connections (cycling through
    `requests`), then wait up to `drain` seconds for the last answers. Responses must carry a
    `Content-Length` (or no body). Transport failures are counted in `errors`, never raised."""
    loop = asyncio.get_running_loop()
    result = OpenLoopResult(rate, seconds, connections)
    total = max(1, round(rate * seconds))
    protocols: list[_Connection] = []
    waits: list[asyncio.Future[None]] = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        _, protocol = await loop.create_connection(
            lambda d=done: _Connection(result, d),  # type: ignore[misc]
            host,
            port,
        )
        protocols.append(protocol)
        waits.append(done)
    schedules: list[list[tuple[float, bytes]]] = [[] for _ in range(connections)]
    for i in range(total):
        schedules[i % connections].append((i / rate, requests[i % len(requests)]))
    with _collector_paused():
        cpu0, start = cpu_time(), time.perf_counter()
        for protocol, schedule in zip(protocols, schedules, strict=True):
            protocol.begin(start, schedule)
        last_due = start + (total - 1) / rate
        timeout = max(0.0, last_due - time.perf_counter()) + drain
        await asyncio.wait(waits, timeout=timeout)
        deadline = time.perf_counter()
    for protocol in protocols:
        late = protocol.unfinished(deadline)
        result.unfinished += len(late)
        result.dues += [due for due, _ in late]
        result.latencies += [latency for _, latency in late]
        protocol.close()
    result.elapsed = deadline - start
    result.cpu_seconds = cpu_time() - cpu0
    return result


def offer(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    seconds: float,
    connections: int = 64,
    drain: float = 10.0,
) -> OpenLoopResult:
    """`offer_async` from synchronous code, on its own event loop (uvloop when installed)."""
    coro = offer_async(
        host, port, requests, rate=rate, seconds=seconds, connections=connections, drain=drain
    )
    return run_loop(coro)
