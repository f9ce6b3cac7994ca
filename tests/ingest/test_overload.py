"""Load shedding: beyond the limit of requests in progress, 429 at once, the body unread."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from ingest.app import Dependencies
from ingest.concurrency import ConcurrencyLimit
from ingest.endpoint import EventsEndpoint


class BlockedKeys:
    """A key cache that holds every request until released, so requests pile up."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0

    async def principal(self, authorization: str | None) -> Any:
        self.waiting += 1
        await self.release.wait()
        raise RuntimeError("not reached in this test")


async def _post(app: EventsEndpoint) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "path": "/v1/events", "method": "POST", "headers": []}

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body of a shed request is never read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


async def _downstream(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("POST /v1/events is answered by the endpoint itself")


def test_requests_beyond_the_limit_get_429_with_retry_after() -> None:
    async def scenario() -> None:
        keys = BlockedKeys()
        limit = ConcurrencyLimit(ceiling=2, target_s=0.5, floor=2)
        deps = Dependencies(keys=keys, meters=None, sink=None, concurrency=limit)  # type: ignore[arg-type]
        app = EventsEndpoint(_downstream, deps)
        held = [asyncio.create_task(_post(app)) for _ in range(2)]
        while keys.waiting < 2:
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
