"""`meterline.http.guard` in a real uvicorn server over raw sockets: slow heads and bodies are
cut off at their deadlines with 408, oversized heads and bodies are refused (431, 413) before
the application sees them, connections past the cap are closed, and none of it slows a normal
client down."""

from __future__ import annotations

import asyncio
import gc
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from meterline.http.guard import DEADLINE_SPREAD, Limits, guarded
from meterline.http.headfirst import CHUNK, TICK_S, Deadlines
from meterline_devstack.process import free_port
from tests.fixtures.http import read_responses

LIMITS = Limits(
    header_timeout_s=0.5,
    body_timeout_s=0.5,
    max_header_bytes=4096,
    max_body_bytes=10_000,
    max_connections=64,
)


class Echo:
    """Answers 200 with the length of the body it read; counts the requests it saw."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = str(size).encode()
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@contextmanager
def serve(limits: Limits = LIMITS) -> Iterator[tuple[int, Echo]]:
    app, port = Echo(), free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=guarded(HttpToolsProtocol, limits),
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield port, app
    finally:
        server.should_exit = True
        thread.join(15)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def post(body: bytes, extra: str = "") -> bytes:
    head = f"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def answer_and_close(sock: socket.socket) -> tuple[int, bytes]:
    """The status of the one response on `sock`, and what followed it (b'' once closed)."""
    (response,), rest = read_responses(sock, 1)
    return int(response.split(b" ", 2)[1]), rest + _drain(sock)


def _drain(sock: socket.socket) -> bytes:
    """What arrives until the server closes (a reset, when it closed with our bytes unread,
    counts as closed)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_a_normal_client_is_served_on_a_kept_alive_connection() -> None:
    with serve() as (port, app), connect(port) as sock:
        sock.sendall(post(b"x" * 5000) + post(b"y" * 10))
        first, second = read_responses(sock, 2)[0]
        assert first.endswith(b"\r\n\r\n5000") and second.endswith(b"\r\n\r\n10")
        assert app.calls == 2


def test_a_head_that_never_ends_is_cut_off_with_408() -> None:
    with serve() as (port, app), connect(port) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\n")
        for _ in range(3):
            time.sleep(0.2)
            sock.sendall(b"X-Drip: 1\r\n")  # bytes keep coming, the deadline holds
        status, rest = answer_and_close(sock)
        assert status == 408 and rest == b""
        assert app.calls == 0


def test_connections_opened_together_are_cut_spread_out_and_none_before_its_deadline() -> None:
    """Cut all in one turn of the event loop, thousands of slow connections opened together
    would hold it for every other request; their deadlines fall due spread over a quarter of
    the deadline instead (`DEADLINE_SPREAD`), never earlier than it."""
    with serve() as (port, _), ExitStack() as stack:
        opened = time.monotonic()  # before any connection: each deadline runs from its own
        socks = [stack.enter_context(connect(port)) for _ in range(40)]
        for sock in socks:
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\n")  # heads that never end
        cut_after = sorted(at - opened for at in _answered_at(socks))
    assert cut_after[0] >= LIMITS.header_timeout_s
    assert cut_after[-1] <= LIMITS.header_timeout_s * (1 + DEADLINE_SPREAD) + 1.0
    assert cut_after[-1] - cut_after[0] > 0.2 * DEADLINE_SPREAD * LIMITS.header_timeout_s


def _answered_at(socks: list[socket.socket]) -> list[float]:
    """When each socket first had something to read (its answer), in monotonic seconds."""
    waiting = {sock.fileno(): sock for sock in socks}
    times: list[float] = []
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        while waiting:
            for key, _ in sel.select(timeout=10) or pytest.fail("a slow head was never cut"):
                times.append(time.monotonic())
                sel.unregister(key.fileobj)
                waiting.pop(key.fd)
    return times


def test_a_connection_waiting_for_its_head_holds_few_objects_the_collector_scans() -> None:
    """Every garbage collection scans the objects of every connection held open: with 2,000
    slowloris connections as uvicorn's protocol (~23 tracked objects each), one collection held
    the event loop 20-30 ms. Until its head has arrived a connection is a `HeadFirst`, whose
    deadline is filed in a slot shared with others rather than a timer of its own (a timer
    was four tracked objects: ~10.4 per connection with one, ~7.7 without)."""
    held = 200
    with serve(Limits(10.0, 10.0, 4096, 10_000, 1000)) as (port, _), ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(held)]
        gc.collect()
        before = len(gc.get_objects())
        for sock in socks:
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\n")  # heads that never end
        time.sleep(0.5)
        gc.collect()
        per_connection = (len(gc.get_objects()) - before) / held
    assert per_connection < 9, per_connection


def test_the_first_heads_deadline_runs_from_the_connections_opening() -> None:
    """Blank lines before a request line pass `HeadFirst`'s end-of-head check: the protocol
    that takes the connection then keeps the deadline that was running."""
    with serve() as (port, app), connect(port) as sock:
        opened = time.monotonic()
        sock.sendall(b"\r\n")
        time.sleep(LIMITS.header_timeout_s * 0.8)
        sock.sendall(b"\r\nPOST /x HTTP/1.1\r\nHost: t\r\n")  # handed over; never ends
        status, _ = answer_and_close(sock)
        assert status == 408 and app.calls == 0
        assert time.monotonic() - opened < LIMITS.header_timeout_s * (1 + DEADLINE_SPREAD) + 0.2


def test_a_connection_that_sends_nothing_is_closed() -> None:
    with serve() as (port, _), connect(port) as sock:
        started = time.monotonic()
        status, _ = answer_and_close(sock)
        assert status == 408
        assert time.monotonic() - started < 5


def test_a_slow_body_is_cut_off_with_408_and_the_app_sees_a_disconnect() -> None:
    with serve() as (port, app), connect(port) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 9000\r\n\r\nx")
        status, rest = answer_and_close(sock)
        assert status == 408 and rest == b""
        assert app.calls == 1


def test_an_oversized_head_is_refused_with_431() -> None:
    with serve() as (port, app), connect(port) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        status, _ = answer_and_close(sock)
        assert status == 431
        assert app.calls == 0


def test_a_declared_oversized_body_is_refused_before_the_app_runs() -> None:
    with serve() as (port, app), connect(port) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 400000000\r\n\r\n")
        status, _ = answer_and_close(sock)
        assert status == 413
        assert app.calls == 0


def test_a_chunked_body_is_refused_once_it_passes_the_limit() -> None:
    with serve() as (port, _), connect(port) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):  # 12 KiB in 4 KiB chunks, against a limit of 10,000 bytes
            sock.sendall(b"1000\r\n" + b"z" * 4096 + b"\r\n")
        status, _ = answer_and_close(sock)
        assert status == 413


def test_connections_past_the_cap_are_closed_and_slow_ones_hold_no_slot() -> None:
    limits = Limits(5.0, 5.0, 4096, 10_000, max_connections=64)
    with serve(limits) as (port, app), ExitStack() as stack:
        idle = [stack.enter_context(connect(port)) for _ in range(60)]
        for sock in idle:
            sock.sendall(b"POST /x HTTP/1.1\r\n")  # heads that are never finished
        with connect(port) as sock:
            sock.sendall(post(b"ok"))
            (response,), _ = read_responses(sock, 1)
            assert response.startswith(b"HTTP/1.1 200")
        extra = [stack.enter_context(connect(port)) for _ in range(8)]
        closed = 0
        for sock in extra:
            sock.settimeout(2)
            try:
                closed += sock.recv(1) == b""
            except (ConnectionResetError, TimeoutError):
                closed += 0
        assert closed >= 1
        assert app.calls == 1


@pytest.mark.parametrize("size", [0, 10_000])
def test_bodies_at_the_limit_are_served(size: int) -> None:
    with serve() as (port, _), connect(port) as sock:
        sock.sendall(post(b"b" * size))
        (response,), _ = read_responses(sock, 1)
        assert response.endswith(b"\r\n\r\n%d" % size)


def test_a_client_still_sending_a_refused_body_reads_the_answer() -> None:
    """The refusal comes while the client is still sending: the server reads and drops the
    rest (a lingering close) instead of resetting the connection under it."""
    with serve() as (port, app), connect(port) as sock:
        body = b"x" * 2_500_000
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body)
        status, rest = answer_and_close(sock)
        assert status == 413 and rest == b""
        assert app.calls == 0


def test_a_header_value_that_never_ends_is_refused_at_the_head_limit() -> None:
    """The parser keeps an unfinished header value to itself: the limit counts raw bytes too."""
    with serve() as (port, app), connect(port) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20_000)
        status, _ = answer_and_close(sock)
        assert status == 431
        assert app.calls == 0


def test_a_wave_of_deadlines_is_ended_a_chunk_per_turn_of_the_loop() -> None:
    """Connections due in the same slot are ended `CHUNK` at a time with the loop's other work
    in between, and one disarmed meanwhile (its head arrived) is not ended."""

    class Connection:
        def __init__(self, turns: list[int]) -> None:
            self.turns = turns

        def due(self) -> None:
            self.turns.append(turn[0])

    turn = [0]

    async def wave() -> list[int]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines.on(loop)
        ended: list[int] = []
        at = loop.time() + 0.01
        connections = [Connection(ended) for _ in range(3 * CHUNK + 1)]
        for connection in connections:
            deadlines.add(connection, at)  # type: ignore[arg-type]
        deadlines.remove(connections[-1], at)  # type: ignore[arg-type]
        while len(ended) < 3 * CHUNK and loop.time() < at + 1:
            await asyncio.sleep(0)
            turn[0] += 1
        await asyncio.sleep(TICK_S)
        return ended

    ended = asyncio.run(wave())
    assert len(ended) == 3 * CHUNK
    assert [ended.count(t) for t in sorted(set(ended))] == [CHUNK] * 3
