"""Load shedding: beyond the limit of requests in progress, 429 at once; a slot is taken only
for a request whose body is in hand, so clients slow to send hold none."""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

import orjson
import pytest

from ingest.app import Dependencies
from ingest.concurrency import ConcurrencyLimit
from ingest.endpoint import EventsEndpoint
from ingest.fairness import FairAdmission
from meterline.tenants import Principal


class AnyKey:
    """Any key is valid: `Bearer <n>` acts for tenant n, no key for a new tenant each time."""

    def __init__(self) -> None:
        self.tenants = 1000

    async def principal(self, authorization: str | None) -> Principal:
        if authorization is None:
            self.tenants += 1
            tenant = self.tenants
        else:
            tenant = int(authorization.removeprefix("Bearer "))
        return Principal(tenant, f"t{tenant}", "k", frozenset({"ingest"}))


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
    deps = Dependencies(
        keys=AnyKey(),
        meters=meters,
        sink=None,  # type: ignore[arg-type]
        concurrency=limit,
        fairness=FairAdmission(math.inf),  # places alone: not refused for the loop's lag
    )
    return EventsEndpoint(_downstream, deps)


async def _post(
    app: EventsEndpoint, body: asyncio.Queue[bytes] | None = None, tenant: int | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """POST /v1/events for `tenant` (a new one if None); the body is `{}` at once, or each
    chunk put on `body` (b"" ends it)."""
    sent: list[dict[str, Any]] = []
    headers = [(b"content-type", b"application/json")]
    if tenant is not None:
        headers.append((b"authorization", b"Bearer %d" % tenant))
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
        assert limit.try_enter(1)
        time.sleep(0.001)  # one cut per target_s at most
        limit.leave(1, 2.0)
    assert limit.limit == 4  # 100 * 0.9**40 is below the floor
    assert [limit.try_enter(t) for t in range(5)] == [True] * 4 + [False]
    for t in range(4):
        limit.leave(t, 0.0)
    before = limit.limit
    for _ in range(200):
        assert limit.try_enter(1)
        limit.leave(1, 0.0)
    # Additive increase: about one place per limit's worth of fast answers.
    assert before < limit.limit < 100
    assert limit.active == 0


def test_slow_answers_together_cut_the_limit_once() -> None:
    limit = ConcurrencyLimit(ceiling=100, target_s=60.0)
    for _ in range(50):
        assert limit.try_enter(1)
    for _ in range(50):
        limit.leave(1, 61.0)
    assert limit.limit == 90


def test_the_limit_never_passes_its_ceiling() -> None:
    limit = ConcurrencyLimit(ceiling=3, target_s=0.5, floor=1)
    for _ in range(100):
        assert limit.try_enter(1)
        limit.leave(1, 0.0)
    assert limit.limit == 3
    with pytest.raises(ValueError, match="floor"):
        ConcurrencyLimit(ceiling=2, target_s=0.5, floor=4)


def test_a_flooding_tenant_leaves_places_for_the_others() -> None:
    limit = ConcurrencyLimit(ceiling=64, target_s=0.5)
    flooder = 0
    while limit.try_enter(1):
        flooder += 1
    assert flooder == 56  # all but the reserve of an eighth
    assert all(limit.try_enter(t) for t in range(2, 9))  # others find places at once
    assert not limit.try_enter(1)  # and the flooder's share has shrunk below what it holds
    assert limit.share(1) == 7


@pytest.mark.parametrize("seed", range(20))
def test_no_tenant_is_refused_while_it_holds_less_than_an_equal_share(seed: int) -> None:
    """A seeded random walk of enters and leaves by a few tenants: the limit is never passed,
    and a tenant holding less than limit/(8/7)/tenants is refused only when the limit is full."""
    rng = random.Random(seed)
    limit = ConcurrencyLimit(ceiling=40, target_s=0.5)
    held: dict[int, int] = {}
    for _ in range(2000):
        tenant = rng.choice([1, 1, 1, 1, 2, 3, 4])
        if held.get(tenant) and rng.random() < 0.45:
            limit.leave(tenant, 0.0)
            held[tenant] -= 1
            continue
        active = sum(held.values())
        holders = len([t for t, n in held.items() if n]) + (not held.get(tenant))
        equal = (40 - 5) // holders
        entered = limit.try_enter(tenant)
        if entered:
            held[tenant] = held.get(tenant, 0) + 1
        elif held.get(tenant, 0) < equal:
            assert active >= 40, (tenant, held)
        assert sum(held.values()) == limit.active <= 40


def test_a_flood_gets_429_while_another_tenant_is_served() -> None:
    async def scenario() -> None:
        meters = BlockedMeters()
        limit = ConcurrencyLimit(ceiling=16, target_s=0.5, floor=4)
        app = _endpoint(limit, meters)
        flood = [asyncio.create_task(_post(app, tenant=1)) for _ in range(14)]
        while meters.waiting < 14:
            await asyncio.sleep(0)
        status, headers, _ = await _post(app, tenant=1)
        assert status == 429 and headers[b"retry-after"] == b"1"
        quiet = asyncio.create_task(_post(app, tenant=2))
        while meters.waiting < 15:
            await asyncio.sleep(0)
        assert limit.active == 15  # the other tenant's request holds a place, unrefused
        for task in [*flood, quiet]:
            task.cancel()
        await asyncio.gather(*flood, quiet, return_exceptions=True)
        assert limit.active == 0

    asyncio.run(scenario())
