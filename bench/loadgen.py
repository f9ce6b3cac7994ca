"""A lean HTTP/1.1 load generator: asyncio, raw sockets, keep-alive, and its own CPU share.

On a 2-core machine the load generator competes with what it measures, so it must be cheap
per request and say how much CPU it took. Requests are pre-encoded bytes (`encode_request`);
each of `connections` keep-alive connections sends one request at a time and reads the whole
response before the next. A connection that breaks is reopened and the failure recorded as
status 0 with the exception's name, never raised.

This is the closed loop (`hammer`): each connection sends its next request as soon as the last
is answered; the rate is whatever the server sustains, and by Little's law latency =
connections / rate. A run is `total` requests, or a `Window` of time (with a warm-up that is
not counted); requests come from a list or from `(connection, n) -> bytes` (new ids for every
request). For latency at a given rate use the open loop, `bench.openloop.offer`. These two are
the bench's only load generators; bench/reliability's `Traffic` and `OpenLoop` are client
populations (ledger, retries, Retry-After), built on this module's `Client`.

Use from synchronous code:

    reqs = [encode_request("POST", "/v1/events", body, host="127.0.0.1", headers=auth)]
    result = hammer("127.0.0.1", 8001, reqs, total=10_000, connections=32)
    print(result.rate, result.status_counts, result.cpu_share)
    hammer("127.0.0.1", [8001, 8011], lambda conn, n: make(conn, n), window=Window.after(5, 0.5))

or `await Client(host, port).send(raw)` for one request at a time (the reliability suite).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import resource
import statistics
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

CRLF = b"\r\n"


def encode_request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    host: str = "127.0.0.1",
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> bytes:
    """The raw bytes of one HTTP/1.1 keep-alive request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class Response:
    """A parsed response; `status` 0 means a transport failure (`error` says which)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""

    def retry_after(self, default: float) -> float:
        """Seconds from the `Retry-After` header, else `default`."""
        try:
            return max(0.0, float(self.headers.get("retry-after", default)))
        except ValueError:
            return default


async def read_response(reader: asyncio.StreamReader) -> Response:
    """Read one response (Content-Length or chunked body) from `reader`."""
    head = await reader.readuntil(CRLF + CRLF)
    status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Response(status, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(CRLF)).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(CRLF)
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


class Client:
    """One keep-alive connection, reopened on demand and when the server closed it while it was
    idle (as HTTP clients do). Not safe for concurrent `send` calls."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> Response:
        """Send one pre-encoded request; transport failures come back as status 0."""
        try:
            async with asyncio.timeout(self.timeout):  # no task per request, unlike wait_for
                return await self._exchange(raw)
        except TimeoutError:  # before OSError, of which it is a subclass
            await self.close()
            return Response(0, error="Timeout")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            await self.close()
            return Response(0, error=type(e).__name__)

    async def _exchange(self, raw: bytes) -> Response:
        if self._reader is not None and self._reader.at_eof():
            await self.close()  # the server closed it while idle (keep-alive timeout)
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(raw)
        await self._writer.drain()
        response = await read_response(self._reader)
        if response.headers.get("connection", "").lower() == "close":
            await self.close()
        return response

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass
class LoadResult:
    """What one load run did. `cpu_share` is this process's CPU over the run, as a fraction of
    the machine (1.0 = every core busy); `cpu_cores` the same in cores."""

    requests: int
    elapsed: float
    status_counts: Counter[int]
    errors: Counter[str]
    latencies: list[float]
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cpu_cores(self) -> float:
        return self.cpu_seconds / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def cpu_share(self) -> float:
        return self.cpu_cores / (os.cpu_count() or 1)

    def percentile(self, q: float) -> float:
        """The `q` quantile (0..1) of request latency in seconds."""
        return percentile(self.latencies, q)


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values` (0.0 for none)."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[min(998, int(q * 1000) - 1)]


def cpu_time() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


RequestSource = Sequence[bytes] | Callable[[int, int], bytes]
"""Requests to send: a list cycled through, or `(connection, n) -> request` for connection's
`n`-th request (a body of its own per request, such as new event ids)."""


@dataclass(frozen=True)
class Window:
    """A time-bounded run: connections send while `time.perf_counter()` is before `until`, and
    only requests sent from `start` on are counted (earlier ones are the warm-up)."""

    start: float
    until: float

    @classmethod
    def after(cls, seconds: float, warmup: float = 0.0) -> Window:
        """`seconds` counted, after `warmup` seconds from now."""
        start = time.perf_counter() + warmup
        return cls(start, start + seconds)


async def hammer_async(
    host: str,
    port: int | Sequence[int],
    requests: RequestSource,
    *,
    total: int | None = None,
    window: Window | None = None,
    connections: int = 16,
    check: Callable[[Response], None] | None = None,
) -> LoadResult:
    """The closed loop: `connections` connections (spread over `port` when it lists several
    servers) each send their next request once the last is answered, `total` requests in all,
    or for as long as `window` lasts. With a window, `elapsed` is its counted span and only the
    requests sent in it are counted; `cpu_seconds` is this process's CPU over the whole run."""
    if (total is None) == (window is None):
        raise ValueError("give either total or window")
    ports = [port] if isinstance(port, int) else list(port)
    source = _source(requests)
    run = _Run(source, check)
    n = max(1, min(connections, total)) if total is not None else connections
    budget = iter(range(total)) if total is not None else None
    cpu0, t0 = cpu_time(), time.perf_counter()
    clients = [Client(host, ports[c % len(ports)]) for c in range(n)]
    await asyncio.gather(*(run.worker(c, clients[c], budget, window) for c in range(n)))
    elapsed = time.perf_counter() - t0 if window is None else window.until - window.start
    cpu = cpu_time() - cpu0
    return LoadResult(len(run.latencies), elapsed, run.counts, run.errors, run.latencies, cpu)


def _source(requests: RequestSource) -> Callable[[int, int], bytes]:
    if callable(requests):
        return requests
    fixed = list(requests)
    return lambda _connection, n: fixed[n % len(fixed)]


class _Run:
    """What the connections of one closed-loop run share: the request source and the tallies."""

    def __init__(
        self, source: Callable[[int, int], bytes], check: Callable[[Response], None] | None
    ) -> None:
        self.source, self.check = source, check
        self.counts: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []

    async def worker(
        self, connection: int, client: Client, budget: Iterator[int] | None, window: Window | None
    ) -> None:
        """Connection `connection`'s loop: request numbers from the shared `budget`, or its own
        count while the `window` lasts."""
        numbers = budget if budget is not None else itertools.count()
        for n in numbers:
            start = time.perf_counter()
            if window is not None and start >= window.until:
                break
            response = await client.send(self.source(connection, n))
            if window is None or start >= window.start:
                self._tally(response, time.perf_counter() - start)
        await client.close()

    def _tally(self, response: Response, latency: float) -> None:
        self.latencies.append(latency)
        self.counts[response.status] += 1
        if response.error:
            self.errors[response.error] += 1
        if self.check is not None:
            self.check(response)


def hammer(
    host: str,
    port: int | Sequence[int],
    requests: RequestSource,
    *,
    total: int | None = None,
    window: Window | None = None,
    connections: int = 16,
    check: Callable[[Response], None] | None = None,
) -> LoadResult:
    """`hammer_async` from synchronous code (runs its own event loop, uvloop when installed)."""
    coro = hammer_async(
        host, port, requests, total=total, window=window, connections=connections, check=check
    )
    return run_loop(coro)


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on a fresh event loop, uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
