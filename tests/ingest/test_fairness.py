"""CPU-aware admission (ingest/fairness.py): while the event loop lags, the tenants above their
share of the recent work are refused before their bodies are read; the others are served."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from ingest.app import Dependencies
from ingest.endpoint import EventsEndpoint
from ingest.fairness import (
    ACTIVE_BYTES,
    OVER_SHARE_PLACES,
    OVER_SHARE_REST,
    REQUEST_BYTES,
    FairAdmission,
    LoopLag,
    TenantWork,
)
from ingest.metrics import IngestMetrics
from tests.ingest.test_overload import AnyKey, BlockedMeters


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class FixedLag(LoopLag):
    """A loop lag set by the test, never measured."""

    def __init__(self, lag: float) -> None:
        super().__init__()
        self.lag = lag

    def ensure_running(self) -> None:
        pass


def test_recent_work_halves_every_second() -> None:
    clock = Clock()
    work = TenantWork(clock)
    work.add(1, 8_000)
    work.add(2, 8_000)
    clock.t += 2.0
    work.add(2, 8_000)  # tenant 2: 2,000 left of its first 8,000, plus 8,000
    assert not work.over_share(1, 0)
    assert work.over_share(2, 0)  # 10,000 is above 1.25 times half of 12,000
    assert work.over_share(1, 20_000)  # 22,000 is above 1.25 times half of 32,000
    assert not work.over_share(1, 4_000)  # 6,000 is below 1.25 times half of 16,000


def test_a_tenant_alone_is_never_over_its_share() -> None:
    work = TenantWork(Clock())
    work.add(1, 10**9)
    assert not work.over_share(1, 10**9)


def test_tenants_no_longer_active_are_forgotten() -> None:
    clock = Clock()
    work = TenantWork(clock)
    work.add(1, 1_000_000)
    work.add(2, 1_000)
    assert work.over_share(1, 0)
    clock.t += 10.0  # tenant 2 fades below ACTIVE_BYTES; tenant 1 is alone again
    assert ACTIVE_BYTES > 1_000 * 2**-10
    assert not work.over_share(1, 0)


def test_while_the_loop_lags_the_heaviest_tenant_is_refused_and_the_lightest_served() -> None:
    lag = FixedLag(0.0)
    fair = FairAdmission(0.002, lag, TenantWork(Clock()))
    for _ in range(20):  # a flood, one request at a time, while the loop keeps up
        assert fair.admit(1, 70_000) and fair.enter(1)
        fair.leave(1)
    assert fair.admit(2, 70)
    lag.lag = 0.010
    assert not fair.admit(1, 70_000)
    assert not fair.admit(1, 0)  # even an empty request: the flood's share is far above half
    assert all(fair.admit(2, 70) for _ in range(100))
    lag.lag = 0.001
    assert fair.admit(1, 70_000)


def test_a_flood_refused_while_the_loop_lags_keeps_its_weight() -> None:
    """Refused requests count as the tenant's demand: a flood refused for as long as the loop
    lags stays far above its share, and the light tenant is served all along. (Counting only
    what was admitted, the flood's record faded below 1.67 times the light tenant's within a
    second or so, and one of its batches was let in each time: 22 in these 10 s.)"""
    clock, lag = Clock(), FixedLag(0.0)
    fair = FairAdmission(0.002, lag, TenantWork(clock))
    for _ in range(5):
        assert fair.admit(1, 60_000) and fair.enter(1)
        fair.leave(1)
    assert fair.admit(2, 70)
    lag.lag = 0.010
    light_refused, flood_admitted = [], 0
    for step in range(1_000):  # 10 s: the flood tries every 10 ms, the light tenant every 20
        clock.t += 0.01
        flood_admitted += fair.admit(1, 60_000)
        if step % 2 and not fair.admit(2, 70):
            light_refused.append(round(clock.t - 100, 2))
    assert light_refused == []
    assert flood_admitted == 0


def test_a_tenant_above_its_share_has_at_most_one_request_served_at_once() -> None:
    assert OVER_SHARE_PLACES == 1
    clock = Clock()
    fair = FairAdmission(0.002, FixedLag(0.0), TenantWork(clock), clock)
    for _ in range(10):  # alone: never over its share
        assert fair.admit(1, 70_000) and fair.enter(1)
    for _ in range(9):
        fair.leave(1)
    assert fair.admit(2, 70) and fair.enter(2)  # another tenant is active: the flood is above
    assert not fair.admit(1, 70_000)  # one served: refused before its body is read
    fair.leave(1)
    assert fair.admit(1, 70_000) and fair.admit(1, 70_000)  # its place free: both read
    assert fair.enter(1)
    assert not fair.enter(1)  # and the second refused once its body is in hand
    assert all(fair.admit(2, 70) and fair.enter(2) for _ in range(10))  # under its share


def test_a_tenant_above_its_share_rests_three_times_as_long_as_it_was_served() -> None:
    """With another tenant active, a flood whose request kept it busy 30 ms is refused for the
    next 90 ms (`OVER_SHARE_REST`): it is served at most a quarter of the time. A tenant
    within its share, or alone, never rests."""
    assert OVER_SHARE_REST == 3.0
    clock = Clock()
    fair = FairAdmission(0.002, FixedLag(0.0), TenantWork(clock), clock)
    assert fair.admit(1, 70_000) and fair.enter(1)
    clock.t += 0.03
    fair.leave(1)  # alone: no rest
    assert fair.admit(2, 70) and fair.enter(2)
    assert fair.admit(1, 70_000) and fair.enter(1)
    clock.t += 0.03
    fair.leave(1)  # above its share, another tenant active: rests 90 ms
    clock.t += 0.089
    assert not fair.admit(1, 70_000)
    assert fair.admit(2, 70) and fair.enter(2)
    fair.leave(2)
    fair.leave(2)  # tenant 2 is within its share: it never rests
    assert fair.admit(2, 70)
    clock.t += 0.002
    assert fair.admit(1, 70_000)


def test_a_client_slow_to_send_takes_no_place() -> None:
    fair = FairAdmission(0.002, FixedLag(0.0), TenantWork(Clock()))
    assert fair.admit(2, 70)
    assert all(fair.admit(1, 70_000) for _ in range(10))  # bodies still arriving
    assert fair.enter(1)


def test_an_admitted_request_is_charged_its_fixed_cost_and_declared_length() -> None:
    fair = FairAdmission(0.002, FixedLag(0.0), TenantWork(Clock()))
    fair.admit(1, 5_000)
    fair.admit(2, 0)
    assert REQUEST_BYTES == 2_000
    assert fair.work.over_share(1, 0)  # 7,000 of 9,000
    assert not fair.work.over_share(2, 5_000)  # 7,000 of 14,000: an equal share


def test_the_loop_lag_follows_a_blocked_loop_and_falls_back_when_it_is_free() -> None:
    async def scenario() -> tuple[float, float]:
        lag = LoopLag(interval_s=0.002, alpha=0.5)
        lag.ensure_running()
        await asyncio.sleep(0.05)
        idle = lag.lag
        blocked = 0.0
        for _ in range(5):
            time.sleep(0.05)  # the loop busy with one long step, five times
            await asyncio.sleep(0.001)  # the timer, long due, runs meanwhile
            blocked = max(blocked, lag.lag)
        lag.stop()
        return idle, blocked

    idle, blocked = asyncio.run(scenario())
    assert idle < 0.02 < 0.03 < blocked


def test_the_loop_lag_starts_again_on_a_new_loop() -> None:
    lag = LoopLag(interval_s=0.002, alpha=1.0)

    async def blocked() -> float:
        lag.ensure_running()
        time.sleep(0.05)
        await asyncio.sleep(0.001)
        return lag.lag

    async def idle() -> float:
        lag.ensure_running()
        await asyncio.sleep(0.02)
        return lag.lag

    frozen = asyncio.run(blocked())
    assert frozen > 0.03
    # measured on the new loop, not frozen at the old value (a bound of its own would fail
    # whenever the machine holds the process off its core for longer)
    assert asyncio.run(idle()) < frozen
    lag.stop()


def _endpoint(fair: FairAdmission, meters: Any, metrics: IngestMetrics) -> EventsEndpoint:
    deps = Dependencies(
        keys=AnyKey(),
        meters=meters,
        sink=None,  # type: ignore[arg-type]
        fairness=fair,
        metrics=metrics,
    )
    return EventsEndpoint(_downstream, deps)


async def _downstream(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("POST /v1/events is answered by the endpoint itself")


async def _post(app: EventsEndpoint, tenant: int, length: int) -> tuple[int, dict[bytes, bytes]]:
    """A request declaring `length` bytes whose body never arrives: answered only if ingest
    answers without reading it."""
    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer %d" % tenant),
        (b"content-length", b"%d" % length),
    ]
    scope = {"type": "http", "path": "/v1/events", "method": "POST", "headers": headers}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 1.0)
    assert orjson.loads(sent[1]["body"])["error"] == "rate_limited"
    return sent[0]["status"], dict(sent[0]["headers"])


@pytest.mark.parametrize("length", [70_000, 10])
def test_a_refused_request_is_answered_429_before_its_body_is_read(length: int) -> None:
    async def scenario() -> None:
        metrics = IngestMetrics()
        fair = FairAdmission(0.002, FixedLag(0.0), TenantWork(Clock()))
        fair.admit(1, 1_000_000)
        fair.admit(2, 100)
        fair.lag.lag = 0.05
        app = _endpoint(fair, BlockedMeters(), metrics)
        status, headers = await _post(app, 1, length)
        assert (status, headers[b"retry-after"]) == (429, b"1")
        assert metrics.registry.get_sample_value("meterline_ingest_refused_over_share_total") == 1

    asyncio.run(scenario())
