"""Load shedding: beyond the limit of requests in progress, 429 at once, the body unread."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ingest.app import Dependencies
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
        deps = Dependencies(keys=keys, meters=None, sink=None, max_active_requests=2)  # type: ignore[arg-type]
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
        assert app._active == 0

    asyncio.run(scenario())
