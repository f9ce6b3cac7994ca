"""The served HTTP protocol (`protocol.CheckProtocol`) in a real uvicorn server, over raw
sockets: cached checks are answered inline with the bytes the ASGI path sends, everything else
takes the ASGI path, and pipelined requests keep their order."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from entitlements_api.app import create_server
from entitlements_api.fastpath import CheckFastPath
from entitlements_api.protocol import protocol_for
from tests.entitlements.conftest import ServerThread
from tests.entitlements.test_fastpath import World, world
from tests.fixtures.http import read_responses

CHECK = "/v1/customers/c1/entitlements/api_calls"


class Counted:
    """The served app, counting the requests that reach it through ASGI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


class Served:
    def __init__(self, url: str, asgi: Counted) -> None:
        self.port = int(url.rsplit(":", 1)[1])
        self.asgi = asgi


@contextmanager
def serve(w: World, inline: bool) -> Iterator[Served]:
    """The served app over uvicorn: with `CheckProtocol` (inline) or plain httptools."""
    fast = create_server(w.deps)
    asgi = Counted(fast)
    server = ServerThread(asgi)
    if inline:
        server.server.config.http = protocol_for(fast)
    with server as url:
        yield Served(url, asgi)


def request(w: World, path: str = CHECK, scope: str = "read", extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {w.keys[scope]}\r\n{extra}\r\n"
    ).encode()


def exchange(port: int, raw: bytes, answers: int = 1) -> list[bytes]:
    """Send `raw` at once on a new connection; read `answers` responses (Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        return read(sock, answers)


def read(sock: socket.socket, answers: int) -> list[bytes]:
    found, rest = read_responses(sock, answers)
    assert not rest
    return found


def undated(response: bytes) -> bytes:
    return re.sub(rb"date: [^\r]*\r\n", b"date: -\r\n", response)


@pytest.fixture
def cached() -> World:
    return world(60.0)


def test_a_cached_check_is_answered_inline_with_the_asgi_paths_bytes(cached: World) -> None:
    with serve(cached, inline=False) as plain:
        (expected,) = exchange(plain.port, request(cached))  # decides, and caches
        (again,) = exchange(plain.port, request(cached))
    with serve(cached, inline=True) as served:
        (first,) = exchange(served.port, request(cached))  # a key it has not seen: ASGI
        assert served.asgi.calls == 1
        (answer,) = exchange(served.port, request(cached))
        assert served.asgi.calls == 1
    assert undated(answer) == undated(first) == undated(expected) == undated(again)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\ndate: ")
    assert b'"reason":"within_limit"' in answer


def test_a_miss_goes_through_asgi_then_hits_are_inline_on_the_same_connection(
    cached: World,
) -> None:
    with serve(cached, inline=True) as served:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            answers = []
            for _ in range(3):
                sock.sendall(request(cached))
                answers += read(sock, 1)
        assert served.asgi.calls == 1
    first, second, third = answers
    assert undated(first) == undated(second) == undated(third)


def test_checks_pipelined_behind_a_miss_wait_for_it(cached: World) -> None:
    with serve(cached, inline=True) as served:
        answers = exchange(served.port, request(cached) * 3, answers=3)
    assert len({undated(a) for a in answers}) == 1


def test_everything_but_a_plain_cached_check_takes_the_asgi_path(cached: World) -> None:
    with serve(cached, inline=True) as served:
        exchange(served.port, request(cached))
        calls = served.asgi.calls
        others = [
            request(cached, CHECK + "?amount=1"),
            request(cached, "/v1/customers/c%31/entitlements/api_calls"),
            request(cached, scope="ingest"),  # 403
            request(cached, extra="Connection: close\r\n"),
            request(cached, "/v1/customers/c1/entitlements/nope"),  # 404
            request(cached, "/healthz"),
            request(cached).replace(b"GET", b"HEAD"),
            request(cached).replace(b"HTTP/1.1", b"HTTP/1.0"),
        ]
        statuses = []
        for raw in others:
            with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
                sock.sendall(raw)
                statuses.append(sock.recv(65536).split(b" ", 2)[1])
        assert served.asgi.calls == calls + len(others)
    assert statuses == [b"200", b"200", b"403", b"200", b"404", b"200", b"405", b"200"]


def test_pipelined_requests_are_answered_in_order(cached: World) -> None:
    """A cached check behind a request still in the ASGI path waits for it, and vice versa."""
    with serve(cached, inline=True) as served:
        exchange(served.port, request(cached))
        slow = request(cached, "/v1/customers/c1/entitlements/nope")
        raw = request(cached) + slow + request(cached) + request(cached, CHECK + "?amount=99")
        answers = exchange(served.port, raw, answers=4)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200", b"404", b"200", b"200"]
    assert b'"has_access":false' in answers[3] and b'"has_access":true' in answers[2]


def test_an_invalidated_decision_is_decided_again(cached: World) -> None:
    with serve(cached, inline=True) as served:
        (before,) = exchange(served.port, request(cached))
        assert cached.service.consume(1, "c1", "api_calls", 7, "e1")[0] == 200
        (after,) = exchange(served.port, request(cached))
        assert served.asgi.calls == 2
    assert b'"used":0' in before and b'"used":7' in after


def test_inline_answers_are_measured_as_the_route(cached: World) -> None:
    with serve(cached, inline=True) as served:
        exchange(served.port, request(cached) * 3, answers=3)
    registry = cached.deps.metrics.registry
    route = {"route": "/v1/customers/{customer}/entitlements/{feature}"}
    assert (
        registry.get_sample_value(
            "meterline_entitlements_requests_total", {**route, "status": "200"}
        )
        == 3
    )
    assert registry.get_sample_value("meterline_entitlements_request_seconds_count", route) == 3
    assert (
        registry.get_sample_value(
            "meterline_entitlements_decisions_total", {"reason": "within_limit"}
        )
        == 3
    )


def test_protocol_for_binds_the_fast_path(cached: World) -> None:
    fast = create_server(cached.deps)
    assert isinstance(fast, CheckFastPath)
    assert protocol_for(fast).fast is fast
