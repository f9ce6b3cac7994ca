"""The load generator against a tiny asyncio HTTP server: keep-alive, parsing, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from bench.loadgen import (
    Client,
    LoadResult,
    Window,
    encode_request,
    hammer_async,
    percentile,
    read_response,
)


async def _server(responses: list[bytes]) -> tuple[asyncio.Server, int]:
    """A server answering each request on a connection with the next of `responses`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in responses:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(h.split(b":")[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            if not answer:
                break
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}"
BUSY = b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"


def test_encode_request_has_length_and_headers() -> None:
    raw = encode_request(
        "POST", "/v1/events", b"[1]", host="h", headers={"Authorization": "Bearer k"}
    )
    head, body = raw.split(b"\r\n\r\n")
    assert body == b"[1]"
    assert b"Content-Length: 3" in head and b"Authorization: Bearer k" in head
    assert head.startswith(b"POST /v1/events HTTP/1.1\r\nHost: h")


def test_client_parses_keep_alive_responses_and_retry_after() -> None:
    async def scenario() -> list[tuple[int, bytes, float]]:
        server, port = await _server([OK, BUSY, CHUNKED])
        client = Client("127.0.0.1", port)
        got = []
        for _ in range(3):
            r = await client.send(encode_request("POST", "/", b"{}"))
            got.append((r.status, r.body, r.retry_after(9.0)))
        await client.close()
        server.close()
        return got

    assert asyncio.run(scenario()) == [(202, b"{}", 9.0), (429, b"", 3.0), (200, b"abcde", 9.0)]


def test_a_dropped_connection_is_status_zero_and_reopened() -> None:
    async def scenario() -> list[int]:
        server, port = await _server([OK, b""])
        client = Client("127.0.0.1", port)
        statuses = [(await client.send(encode_request("GET", "/"))).status for _ in range(3)]
        await client.close()
        server.close()
        return statuses

    assert asyncio.run(scenario()) == [202, 0, 202]


def test_a_connection_the_server_closed_while_idle_is_reopened_before_sending() -> None:
    async def scenario() -> list[int]:
        server, port = await _server([OK])  # closes each connection after one answer
        client = Client("127.0.0.1", port)
        statuses = []
        for _ in range(3):
            statuses.append((await client.send(encode_request("GET", "/"))).status)
            await asyncio.sleep(0.1)  # the server's close arrives while the client is idle
        await client.close()
        server.close()
        return statuses

    assert asyncio.run(scenario()) == [202, 202, 202]


def test_hammer_counts_statuses_and_cpu() -> None:
    async def scenario() -> LoadResult:
        server, port = await _server([OK] * 100)
        result = await hammer_async(
            "127.0.0.1", port, [encode_request("GET", "/")], total=50, connections=4
        )
        server.close()
        return result

    result = asyncio.run(scenario())
    assert result.status_counts == {202: 50}
    assert len(result.latencies) == 50 and result.rate > 0
    assert 0 <= result.cpu_share <= 1.0 and result.cpu_seconds >= 0


def test_a_window_counts_only_requests_sent_after_the_warm_up_and_stops_at_its_end() -> None:
    sent: list[tuple[int, int]] = []

    def request(conn: int, n: int) -> bytes:
        sent.append((conn, n))
        return encode_request("POST", "/", b"%d-%d" % (conn, n))

    async def scenario() -> tuple[LoadResult, list[int]]:
        servers = [await _server([OK] * 100_000) for _ in range(2)]
        ports = [port for _, port in servers]
        window = Window.after(0.3, warmup=0.2)
        result = await hammer_async("127.0.0.1", ports, request, window=window, connections=4)
        ended = time.perf_counter()
        for server, _ in servers:
            server.close()
        assert ended - window.until < 0.1  # nothing sent after the window
        return result, ports

    result, _ = asyncio.run(scenario())
    assert result.elapsed == pytest.approx(0.3)
    assert 0 < result.requests < len(sent)  # the warm-up's requests were sent, not counted
    assert result.status_counts == {202: result.requests}
    assert {conn for conn, _ in sent} == {0, 1, 2, 3}
    per_connection = [n for conn, n in sent if conn == 0]
    assert per_connection == list(range(len(per_connection)))  # its own numbering


def test_hammer_spreads_connections_over_the_ports() -> None:
    async def scenario() -> list[int]:
        answered = [0, 0]

        def server_for(i: int) -> Callable[..., Awaitable[None]]:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                while not reader.at_eof():
                    try:
                        await reader.readuntil(b"\r\n\r\n")
                    except asyncio.IncompleteReadError:
                        break
                    answered[i] += 1
                    writer.write(OK)
                writer.close()

            return handle

        servers = [await asyncio.start_server(server_for(i), "127.0.0.1", 0) for i in (0, 1)]
        ports = [s.sockets[0].getsockname()[1] for s in servers]
        result = await hammer_async(
            "127.0.0.1", ports, [encode_request("GET", "/")], total=40, connections=4
        )
        for server in servers:
            server.close()
        assert result.status_counts == {202: 40}
        return answered

    answered = asyncio.run(scenario())
    assert sum(answered) == 40 and min(answered) > 0


def test_hammer_needs_a_total_or_a_window() -> None:
    with pytest.raises(ValueError, match="total or window"):
        asyncio.run(hammer_async("127.0.0.1", 1, [b""], total=1, window=Window.after(1)))


def test_percentile() -> None:
    values = [float(i) for i in range(1, 101)]
    assert 50 <= percentile(values, 0.5) <= 51
    assert 98 <= percentile(values, 0.99) <= 100
    assert percentile([], 0.5) == 0.0


def test_read_response_handles_no_body() -> None:
    async def scenario() -> int:
        reader = asyncio.StreamReader()
        reader.feed_data(b"HTTP/1.1 204 No Content\r\n\r\n")
        return (await read_response(reader)).status

    assert asyncio.run(scenario()) == 204


def test_a_silent_server_is_a_timeout() -> None:
    async def scenario() -> tuple[int, str]:
        async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(5)

        silent = await asyncio.start_server(never, "127.0.0.1", 0)
        client = Client("127.0.0.1", silent.sockets[0].getsockname()[1], timeout=0.2)
        response = await client.send(encode_request("GET", "/"))
        await client.close()
        silent.close()
        return response.status, response.error

    assert asyncio.run(scenario()) == (0, "Timeout")
