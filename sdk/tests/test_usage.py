"""The usage SDK against a scripted server (httpx mock transports): batching, retries with the
same ids and timestamps, Retry-After, invalid events, drop policies and close."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import orjson

from meterline_sdk import AsyncMeterline, DropPolicy, Meterline

Script = Callable[[list[dict[str, object]], int], httpx.Response]


class Server:
    """Records every batch it receives; `script(batch, attempt_number)` decides the answer."""

    def __init__(self, script: Script | None = None) -> None:
        self.batches: list[list[dict[str, object]]] = []
        self.script = script or (lambda b, n: accepted(len(b)))
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer k"
        batch = orjson.loads(request.content)
        with self.lock:
            self.batches.append(batch)
            n = len(self.batches)
        return self.script(batch, n)


def accepted(n: int, dup: int = 0) -> httpx.Response:
    return httpx.Response(202, json={"accepted": n - dup, "duplicates": dup})


def _client(server: Server, **kw: object) -> Meterline:
    opts: dict[str, object] = {"flush_interval": 0.01, "backoff_base": 0.001, **kw}
    return Meterline("http://ingest", "k", transport=httpx.MockTransport(server), **opts)  # type: ignore[arg-type]


def test_record_returns_a_uuid7_at_once_and_batches_by_size() -> None:
    server = Server()
    client = _client(server, batch_size=10, flush_interval=5)
    ids = [client.record("c", "api_calls", value=2) for _ in range(25)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    client.close()
    assert [len(b) for b in server.batches] == [10, 10, 5]
    first = server.batches[0][0]
    assert set(first) == {"id", "customer", "meter", "value", "timestamp"}
    assert isinstance(first["timestamp"], int)
    assert client.stats.accepted == 25 and client.stats.recorded == 25


def test_retries_keep_ids_and_timestamps_and_honour_retry_after() -> None:
    def script(batch: list[dict[str, object]], n: int) -> httpx.Response:
        if n == 1:
            return httpx.Response(503, headers={"Retry-After": "0.2"}, json={})
        if n == 2:
            return httpx.Response(429, headers={"Retry-After": "0.1"}, json={})
        return accepted(len(batch), 1)

    server = Server(script)
    client = _client(server)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    client.record("c", "m", id="fixed", timestamp=when, properties={"p": 1})
    start = time.monotonic()
    assert client.flush(5)
    assert time.monotonic() - start >= 0.3
    client.close()
    assert server.batches[0] == server.batches[1] == server.batches[2]
    assert server.batches[0][0]["timestamp"] == int(when.timestamp() * 1000)
    assert (client.stats.retries, client.stats.duplicates) == (2, 1)


def test_network_errors_are_retried() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            raise httpx.ConnectError("refused", request=request)
        return accepted(len(orjson.loads(request.content)))

    client = Meterline("http://x", "k", transport=httpx.MockTransport(handler), backoff_base=0.001)
    client.record("c", "m")
    client.close()
    assert (client.stats.accepted, client.stats.retries) == (1, 2)


def test_invalid_events_are_dropped_and_the_rest_resent() -> None:
    def script(batch: list[dict[str, object]], n: int) -> httpx.Response:
        bad = [i for i, e in enumerate(batch) if e["meter"] == "nope"]
        if bad:
            errors = [{"index": i, "field": "meter", "message": "unknown"} for i in bad]
            return httpx.Response(422, json={"error": "validation_failed", "errors": errors})
        return accepted(len(batch))

    server = Server(script)
    client = _client(server, batch_size=3, flush_interval=5)
    for meter in ("a", "nope", "b"):
        client.record("c", meter)
    client.close()
    assert [[e["meter"] for e in b] for b in server.batches] == [["a", "nope", "b"], ["a", "b"]]
    assert (client.stats.accepted, client.stats.rejected) == (2, 1)
    assert "422" in (client.stats.last_error or "")


def test_a_batch_too_large_is_split() -> None:
    server = Server(lambda b, n: httpx.Response(413, json={}) if len(b) > 2 else accepted(len(b)))
    client = _client(server, batch_size=8, flush_interval=5)
    for _ in range(8):
        client.record("c", "m")
    client.close()
    assert client.stats.accepted == 8 and client.stats.rejected == 0


def test_drop_policies_bound_memory_and_count_drops() -> None:
    gate = threading.Event()

    def script(batch: list[dict[str, object]], n: int) -> httpx.Response:
        gate.wait(5)
        return accepted(len(batch))

    for policy, kept in ((DropPolicy.NEWEST, "first"), (DropPolicy.OLDEST, "last")):
        gate.clear()
        server = Server(script)
        client = _client(server, batch_size=1, max_buffered=5, drop_policy=policy)
        client.record("c", "m", id="blocker")
        while not server.batches:
            time.sleep(0.001)
        for i in range(20):
            client.record("c", "m", id=f"{i}")
        gate.set()
        client.close()
        sent = [b[0]["id"] for b in server.batches[1:]]
        assert client.stats.dropped == 15
        assert sent == (
            [f"{i}" for i in range(5)] if kept == "first" else [f"{i}" for i in range(15, 20)]
        )


def test_close_gives_up_at_its_timeout_and_counts_the_abandoned() -> None:
    server = Server(lambda b, n: httpx.Response(503, headers={"Retry-After": "1"}, json={}))
    client = _client(server)
    for _ in range(3):
        client.record("c", "m")
    start = time.monotonic()
    client.close(timeout=0.5)
    assert time.monotonic() - start < 3
    assert client.stats.abandoned == 3


def test_async_client_batches_retries_and_flushes_on_close() -> None:
    seen: list[list[dict[str, object]]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        batch = orjson.loads(request.content)
        seen.append(batch)
        if len(seen) == 1:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={})
        return accepted(len(batch))

    async def scenario() -> AsyncMeterline:
        async with AsyncMeterline(
            "http://x",
            "k",
            batch_size=4,
            flush_interval=0.01,
            backoff_base=0.001,
            transport=httpx.MockTransport(handler),
        ) as client:
            for i in range(6):
                client.record("c", "m", value=i)
            await asyncio.sleep(0)
        return client

    client = asyncio.run(scenario())
    assert client.stats.accepted == 6 and client.stats.retries == 1
    assert seen[0] == seen[1]
