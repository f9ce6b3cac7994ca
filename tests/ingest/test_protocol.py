"""The served HTTP protocol (`protocol.EventsProtocol`) in a real uvicorn server, over raw
sockets: POST /v1/events is answered with the bytes the ASGI path sends, for every status;
everything else takes the ASGI path; pipelined requests keep their order; bodies that arrive in
parts, past uvicorn's high-water mark, or not at all; errors, limits and graceful shutdown."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.app import Dependencies, create_server
from ingest.caches import KeyCache, MeterCache
from ingest.protocol import protocol_for
from ingest.ratelimit import RateLimitedSink, TokenBuckets
from ingest.sinks import MemorySink, Outcome, Sink
from meterline.catalog import parse_catalog
from meterline.catalog.repository import MemoryCatalogRepository
from meterline.events import EncodedEvents
from meterline.tenants import MemoryTenantRepository, Principal
from meterline_devstack.process import free_port
from tests.fixtures.http import read_responses
from tests.ingest.support import CATALOG


class Sink_(Sink):
    """Keeps events; waits `delay_s` first; raises `fail` if set."""

    def __init__(self, delay_s: float = 0.0, fail: Exception | None = None) -> None:
        self.memory, self.delay_s, self.fail = MemorySink(), delay_s, fail

    async def submit(self, principal: Principal, events: EncodedEvents) -> Outcome:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return await self.memory.submit(principal, events)


@dataclass
class World:
    deps: Dependencies
    sink: Sink_
    keys: dict[str, str]


def world(sink: Sink_ | None = None, rate: float = 100.0) -> World:
    tenants, catalogs = MemoryTenantRepository(), MemoryCatalogRepository()
    acme = tenants.create_tenant("acme")
    catalogs.apply(acme.id, parse_catalog(CATALOG))
    keys = {s: tenants.create_key("acme", [s])[1] for s in ("ingest", "read")}
    sink = sink or Sink_()
    deps = Dependencies(
        keys=KeyCache(tenants, "ingest"),
        meters=MeterCache(catalogs),
        sink=RateLimitedSink(sink, TokenBuckets(rate, {})),
        max_body_bytes=200_000,
    )
    return World(deps, sink, keys)


class Counted:
    """The served app, counting the requests that reach it through ASGI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.calls = app, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


class Served:
    def __init__(self, server: uvicorn.Server, port: int, asgi: Counted) -> None:
        self.server, self.port, self.asgi = server, port, asgi


@contextmanager
def serve(w: World, taken: bool, **config: Any) -> Iterator[Served]:
    """The app as `python -m ingest` serves it: with `EventsProtocol` (taken) or plain
    httptools, in a thread on a free loopback port."""
    app = create_server(w.deps)
    asgi = Counted(app)
    port = free_port()
    http: Any = protocol_for(app) if taken else "httptools"
    options = {"log_level": "warning", "access_log": False, **config}
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port, http=http, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield Served(server, port, asgi)
    finally:
        server.should_exit = True
        thread.join(15)


def post(key: str | None, body: bytes, ctype: str = "application/json", extra: str = "") -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def event(i: int, **extra: object) -> bytes:
    return orjson.dumps({"id": f"e-{i}", "customer": "c", "meter": "api_calls", **extra})


def read(sock: socket.socket, answers: int = 1) -> list[bytes]:
    """`answers` whole responses (Content-Length framed) from `sock`."""
    return read_responses(sock, answers)[0]


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def exchange(port: int, raw: bytes, answers: int = 1) -> list[bytes]:
    with connect(port) as sock:
        sock.sendall(raw)
        return read(sock, answers)


def undated(response: bytes) -> bytes:
    return re.sub(rb"date: [^\r]*\r\n", b"date: -\r\n", response)


def untimed(response: bytes) -> bytes:
    """`undated`, and without the Retry-After of a 429: the tenant's debt, in whole seconds,
    shrinks while the requests run (each server's run crossed a second's boundary or not,
    with the machine's load)."""
    return re.sub(rb"retry-after: \d+\r\n", b"retry-after: -\r\n", undated(response))


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def cases(keys: dict[str, str]) -> list[bytes]:
    """A request for each outcome of the contract, in an order that ends in debt (429)."""
    ingest = keys["ingest"]
    return [
        post(ingest, event(1)),
        post(ingest, b'{"id":"n","customer":"c","meter":"tokens"}', "application/x-ndjson"),
        post(None, b"{}"),
        post(keys["read"], b"{}"),
        post(ingest, b"{}", "text/plain"),
        post(ingest, b"[" + b" " * 200_001 + b"]"),
        post(ingest, b"[" + b",".join([b"{}"] * 1001) + b"]"),
        post(ingest, b"{not json"),
        post(ingest, b"[" + event(1, value=-1) + b',"x",' + event(2, extra=1) + b"]"),
        post(ingest, b"[" + b",".join(event(i) for i in range(600)) + b"]"),  # into debt
        post(ingest, event(9)),
    ]


def test_every_answer_is_the_asgi_paths_bytes_and_skips_asgi() -> None:
    answers: dict[bool, list[bytes]] = {}
    for taken in (False, True):
        w = world()
        with serve(w, taken) as served:
            with connect(served.port) as sock:
                answers[taken] = []
                for raw in cases(w.keys):
                    sock.sendall(raw)
                    answers[taken] += read(sock)
            assert served.asgi.calls == (0 if taken else len(answers[taken]))
        assert len(w.sink.memory.events) == 602
    assert [untimed(a) for a in answers[True]] == [untimed(a) for a in answers[False]]
    assert [status(a) for a in answers[True]] == [
        202,
        202,
        401,
        403,
        415,
        413,
        413,
        422,
        422,
        202,
        429,
    ]
    assert re.search(rb"\r\nretry-after: \d+\r\n", answers[True][-1])


def test_everything_else_takes_the_asgi_path() -> None:
    w = world()
    key = w.keys["ingest"]
    others = [
        post(key, event(1)).replace(b"/v1/events", b"/v1/events?x=1"),
        post(key, event(2)).replace(b"HTTP/1.1", b"HTTP/1.0"),
        post(key, event(3), extra="Connection: close\r\n"),
        post(key, event(4), extra="Expect: 100-continue\r\n"),
        b"GET /v1/events HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    ]
    with serve(w, taken=True) as served:
        statuses = []
        for raw in others:
            with connect(served.port) as sock:
                sock.sendall(raw)
                answer = sock.recv(65536)
                if answer.startswith(b"HTTP/1.1 100"):
                    answer = answer.split(b"\r\n\r\n", 1)[1] or sock.recv(65536)
                statuses.append(status(answer))
        assert served.asgi.calls == len(others)
    assert statuses == [202, 202, 202, 202, 405, 200]
    assert [e.id for e in w.sink.memory.events] == ["e-1", "e-2", "e-3", "e-4"]


def test_pipelined_requests_are_answered_in_order() -> None:
    w = world(Sink_(delay_s=0.05))
    key = w.keys["ingest"]
    health = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    raw = post(key, event(1)) + health + post(key, event(2)) + post(key, event(3)) + health
    with serve(w, taken=True) as served:
        answers = exchange(served.port, raw, answers=5)
    assert [status(a) for a in answers] == [202, 200, 202, 202, 200]
    assert [e.id for e in w.sink.memory.events] == ["e-1", "e-2", "e-3"]


def test_a_body_in_parts_and_past_the_high_water_mark_is_read_whole() -> None:
    w = world(rate=1e9)
    key = w.keys["ingest"]
    big = b"[" + b",".join(event(i, properties={"pad": "x" * 80}) for i in range(1000)) + b"]"
    assert len(big) > 65536  # uvicorn pauses reading past this
    with serve(w, taken=True) as served:
        with connect(served.port) as sock:
            sock.sendall(post(key, big))
            (first,) = read(sock)
            raw = post(key, event(5000))
            for part in (raw[:40], raw[40:-20], raw[-20:-5], raw[-5:]):
                sock.sendall(part)
                time.sleep(0.05)
            (second,) = read(sock)
        assert served.asgi.calls == 0
    assert b'"accepted":1000' in first and b'"accepted":1' in second
    assert len(w.sink.memory.events) == 1001


def test_a_client_gone_mid_body_is_counted_and_the_server_goes_on() -> None:
    w = world()
    key = w.keys["ingest"]
    with serve(w, taken=True) as served:
        with connect(served.port) as sock:
            sock.sendall(post(key, event(1))[:-5])
            time.sleep(0.1)
        registry = w.deps.metrics.registry
        deadline = time.monotonic() + 10
        while registry.get_sample_value("meterline_ingest_requests_total", {"status": "400"}) != 1:
            assert time.monotonic() < deadline, "the abandoned request was never counted"
            time.sleep(0.02)
        assert status(exchange(served.port, post(key, event(2)))[0]) == 202
    assert [e.id for e in w.sink.memory.events] == ["e-2"]


def test_an_unexpected_error_is_a_500_as_on_the_asgi_path() -> None:
    answers = []
    for taken in (False, True):
        w = world(Sink_(fail=RuntimeError("boom")))
        with serve(w, taken) as served, connect(served.port) as sock:
            sock.sendall(post(w.keys["ingest"], event(1)))
            answers += read(sock)
            assert sock.recv(100) == b""  # the connection is closed after it
        registry = w.deps.metrics.registry
        assert registry.get_sample_value("meterline_ingest_requests_total", {"status": "500"}) == 1
    assert undated(answers[0]) == undated(answers[1])
    assert answers[1].startswith(b"HTTP/1.1 500 Internal Server Error\r\n")


def test_a_request_in_progress_at_shutdown_is_answered_then_the_connection_closed() -> None:
    w = world(Sink_(delay_s=0.5))
    with serve(w, taken=True) as served, connect(served.port) as sock:
        sock.sendall(post(w.keys["ingest"], event(1)))
        time.sleep(0.2)
        served.server.should_exit = True
        (answer,) = read(sock)
        assert sock.recv(100) == b""
    assert status(answer) == 202
    assert b"connection: close\r\n" in answer


def test_uvicorns_concurrency_limit_still_answers_503() -> None:
    w = world()
    with serve(w, taken=True, limit_concurrency=1) as served, connect(served.port) as sock:
        sock.sendall(post(w.keys["ingest"], event(1)))
        assert status(sock.recv(65536)) == 503
    assert w.sink.memory.events == []


@pytest.mark.parametrize("taken", [False, True])
def test_the_answer_to_a_request_whose_client_left_is_not_written(taken: bool) -> None:
    """A slow request whose client closed is still counted once; nothing breaks after it."""
    w = world(Sink_(delay_s=0.2))
    with serve(w, taken) as served:
        with connect(served.port) as sock:
            sock.sendall(post(w.keys["ingest"], event(1)))
            time.sleep(0.05)
        time.sleep(0.4)
        assert status(exchange(served.port, post(w.keys["ingest"], event(2)))[0]) == 202
    registry = w.deps.metrics.registry
    assert registry.get_sample_value("meterline_ingest_requests_total", {"status": "202"}) == 2
