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
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

T = TypeVar("T")

CRLF = b"\r\n"
HEAD_END = CRLF + CRLF
WRITE_BUFFER_HIGH = 64 * 1024  # drain only above this: a coroutine per request saved


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
    """A response; `status` 0 means a transport failure (`error` says which). `head` is the
    status line and headers as received; `headers` parses them when first asked for (the closed
    loop reads thousands of responses a second and most are never looked into)."""

    status: int
    head: bytes = b""
    body: bytes = b""
    error: str = ""

    @cached_property
    def headers(self) -> dict[str, str]:
        """Header names (lower case) and values."""
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        parts = (line.partition(":") for line in lines)
        return {name.strip().lower(): value.strip() for name, _, value in parts}

    @property
    def closes(self) -> bool:
        """Whether the server closes the connection after this response."""
        return b"\r\nconnection: close" in self.head.lower()

    def retry_after(self, default: float) -> float:
        """Seconds from the `Retry-After` header, else `default`."""
        try:
            return max(0.0, float(self.headers.get("retry-after", default)))
        except ValueError:
            return default


async def read_response(reader: asyncio.StreamReader) -> Response:
    """Read one response (Content-Length or chunked body) from `reader`."""
    head = (await reader.readuntil(HEAD_END))[:-4]
    status = int(head.split(b" ", 2)[1])
    if b"\r\ntransfer-encoding: chunked" in head.lower():
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(content_length(head))
    return Response(status, head, body)


def content_length(head: bytes) -> int:
    """The `Content-Length` of a response head (0 without one)."""
    at = head.lower().find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : end if end >= 0 else len(head)])


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
    idle (as HTTP clients do). Not safe for concurrent `send` calls.

    A request unanswered after `timeout` seconds is cancelled and comes back as "Timeout". The
    deadline is one float per request, checked by one timer armed at most once per `timeout`
    (a timer per request, as `asyncio.timeout` sets, cost the closed loop about a third of its
    CPU per request)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._deadline: float | None = None  # loop time the request in flight must end by
        self._watch: asyncio.TimerHandle | None = None
        self._sender: asyncio.Task[Any] | None = None
        self._expired = False

    async def send(self, raw: bytes) -> Response:
        """Send one pre-encoded request; transport failures come back as status 0."""
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.timeout
        self._sender = asyncio.current_task()
        if self._watch is None:
            self._watch = loop.call_at(self._deadline, self._check_deadline)
        try:
            return await self._exchange(raw)
        except asyncio.CancelledError:
            if not self._expired or self._sender is None or self._sender.uncancel() > 0:
                raise
            await self.close()
            return Response(0, error="Timeout")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            await self.close()
            return Response(0, error=type(e).__name__)
        finally:
            self._deadline, self._expired = None, False

    def _check_deadline(self) -> None:
        self._watch = None
        if self._deadline is None:
            return  # idle: the next send arms the timer again
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._watch = loop.call_at(self._deadline, self._check_deadline)
        elif self._sender is not None:
            self._expired = True
            self._sender.cancel()

    async def _exchange(self, raw: bytes) -> Response:
        if self._reader is not None and self._reader.at_eof():
            await self.close()  # the server closed it while idle (keep-alive timeout)
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(raw)
        if self._writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
            await self._writer.drain()
        response = await read_response(self._reader)
        if response.closes:
            await self.close()
        return response

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
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
