"""The read lane: usage series run on threads and connections of their own, one per tenant at a
time, so a flood of expensive usage queries gets 429 while entitlement checks keep answering."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from entitlements_api.reads import ReadLane
from meterline.errors import TooManyRequests
from tests.entitlements.conftest import Api


def test_one_read_per_tenant_and_a_bounded_lane() -> None:
    async def scenario() -> None:
        lane = ReadLane(workers=2, per_tenant=1, capacity=2)
        gate = threading.Event()
        names: list[str] = []

        def slow() -> str:
            names.append(threading.current_thread().name)
            gate.wait(5)
            return "done"

        first = asyncio.ensure_future(lane.run(1, slow))
        await asyncio.sleep(0.05)
        with pytest.raises(TooManyRequests, match="per tenant"):
            await lane.run(1, slow)
        second = asyncio.ensure_future(lane.run(2, slow))
        await asyncio.sleep(0.05)
        with pytest.raises(TooManyRequests, match="capacity"):
            await lane.run(3, slow)
        gate.set()
        assert await asyncio.gather(first, second) == ["done", "done"]
        assert all(name.startswith("reads") for name in names)
        assert await lane.run(1, lambda: 7) == 7  # places are given back
        lane.close()

    asyncio.run(scenario())


def test_a_flood_of_long_usage_queries_gets_429_and_checks_keep_answering(api: Api) -> None:
    """Latencies are printed, not asserted (the machine's load varies): the promise tested is
    that every check is answered, and that the flood is refused in part rather than queued."""
    params = {
        "meter": "api_calls",
        "from": "2000-01-01T00:00:00Z",
        "to": "2026-12-01T00:00:00Z",
        "window": "day",
    }
    statuses: list[int] = []
    stop = threading.Event()

    def flood() -> None:
        with api.client("read") as http:
            while not stop.is_set():
                statuses.append(http.get("/v1/usage", params=params).status_code)

    def timed_checks(http: httpx.Client) -> list[float]:
        seconds = []
        for _ in range(40):
            started = time.perf_counter()
            answer = http.get("/v1/customers/c1/entitlements/api_calls")
            seconds.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
        return seconds

    with api.client("read") as http:
        quiet = timed_checks(http)
        with ThreadPoolExecutor(16) as pool:
            for _ in range(16):
                pool.submit(flood)
            time.sleep(0.5)
            loaded = timed_checks(http)
            stop.set()
        assert http.get("/v1/usage", params=params).status_code == 200  # places given back
    print(
        f"\nchecks: quiet p50 {statistics.median(quiet) * 1000:.1f} ms; during the flood p50 "
        f"{statistics.median(loaded) * 1000:.1f} ms, max {max(loaded) * 1000:.1f} ms; "
        f"usage answers {sorted(set(statuses))}"
    )
    assert 200 in statuses and 429 in statuses
    assert all(s in (200, 429) for s in statuses)
