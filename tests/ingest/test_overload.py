"""Load shedding: beyond the limit of requests in progress, 429 at once; a slot is taken only
for a request whose body is in hand, so clients slow to send hold none."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from ingest.app import Dependencies
from ingest.concurrency import ConcurrencyLimit
from ingest.endpoint import EventsEndpoint
from meterline.tenants import Principal


class AnyKey:
    async def principal(self, authorization: str | None) -> Principal:
        return Principal(1, "acme", "k", frozenset({"ingest"}))


class BlockedMeters:
    """A catalog cache that holds every request in ingest's own part until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0

    async def meters(self, tenant_id: int) -> Any:
        self.waiting += 1
        await self.release.wait()
        raise RuntimeError("not reached in this test")


def _endpoint(limit: ConcurrencyLimit, meters: Any) -> EventsEndpoint:
    deps = Dependencies(keys=AnyKey(), meters=meters, sink=None, concurrency=limit)  # type: ignore[arg-type]
    return EventsEndpoint(_downstream, deps)


async def _post(
    app: EventsEndpoint, body: asyncio.Queue[bytes] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """POST /v1/events; the body is `{}` at once, or each chunk put on `body` (b"" ends it)."""
    sent: list[dict[str, Any]] = []
    headers = [(b"content-type", b"application/json")]
    scope = {"type": "http", "path": "/v1/events", "method": "POST", "headers": headers}

    async def receive() -> dict[str, Any]:
        if body is None:
            return {"type": "http.request", "body": b"{}", "more_body": False}
        chunk = await body.get()
        return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


async def _downstream(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("POST /v1/events is answered by the endpoint itself")


def test_requests_beyond_the_limit_get_429_with_retry_after() -> None:
    async def scenario() -> None:
        meters = BlockedMeters()
        limit = ConcurrencyLimit(ceiling=2, target_s=0.5, floor=2)
        app = _endpoint(limit, meters)
        held = [asyncio.create_task(_post(app)) for _ in range(2)]
        while meters.waiting < 2:
            await asyncio.sleep(0)
        status, headers, body = await _post(app)
        assert status == 429
        assert headers[b"retry-after"] == b"1"
        assert orjson.loads(body)["error"] == "rate_limited"
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        assert limit.active == 0

    asyncio.run(scenario())


def test_a_client_slow_to_send_its_body_holds_no_slot() -> None:
    async def scenario() -> None:
        meters = BlockedMeters()
        limit = ConcurrencyLimit(ceiling=2, target_s=0.5, floor=2)
        app = _endpoint(limit, meters)
        bodies = [asyncio.Queue[bytes]() for _ in range(8)]
        slow = [asyncio.create_task(_post(app, q)) for q in bodies]
        for q in bodies:
            q.put_nowait(b"[")  # a first byte, then nothing
        await asyncio.sleep(0.05)
        assert limit.active == 0
        served = asyncio.create_task(_post(app))
        while meters.waiting < 1:
            await asyncio.sleep(0)
        assert limit.active == 1  # the complete request got a slot; the slow ones hold none
        for task in [*slow, served]:
            task.cancel()
        await asyncio.gather(*slow, served, return_exceptions=True)
        assert limit.active == 0

    asyncio.run(scenario())


def test_the_limit_shrinks_while_answers_are_slow_and_grows_back_when_fast() -> None:
    limit = ConcurrencyLimit(ceiling=100, target_s=0.001, floor=4)
    for _ in range(40):
        assert limit.try_enter()
        time.sleep(0.001)  # one cut per target_s at most
        limit.leave(2.0)
    assert limit.limit == 4  # 100 * 0.9**40 is below the floor
    assert [limit.try_enter() for _ in range(5)] == [True] * 4 + [False]
    for _ in range(4):
        limit.leave(0.0)
    before = limit.limit
    for _ in range(200):
        assert limit.try_enter()
        limit.leave(0.0)
    # Additive increase: about one place per limit's worth of fast answers.
    assert before < limit.limit < 100
    assert limit.active == 0


def test_slow_answers_together_cut_the_limit_once() -> None:
    limit = ConcurrencyLimit(ceiling=100, target_s=60.0)
    for _ in range(50):
        assert limit.try_enter()
    for _ in range(50):
        limit.leave(61.0)
    assert limit.limit == 90


def test_the_limit_never_passes_its_ceiling() -> None:
    limit = ConcurrencyLimit(ceiling=3, target_s=0.5, floor=1)
    for _ in range(100):
        assert limit.try_enter()
        limit.leave(0.0)
    assert limit.limit == 3
    with pytest.raises(ValueError, match="floor"):
        ConcurrencyLimit(ceiling=2, target_s=0.5, floor=4)
