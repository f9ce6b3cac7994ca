"""200 concurrent consumers against a limit of 1,000: exactly 1,000 granted, and the pipeline
(the real aggregator, as a subprocess) later counts exactly 1,000; and 200 in the last minutes of
a period that ends at :37, against a limit of 57."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from meterline.catalog import load_catalog
from meterline.clock import from_ms
from meterline.entitlements import add_months
from meterline.entitlements.periods import iso
from tests.entitlements.conftest import Api, free_port, serve_api
from tests.fixtures.stripe import StripeEmulatorHandle

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CONSUMERS = 200
PER_CONSUMER = 6


async def hammer(api: Api, per_consumer: int = PER_CONSUMER) -> Counter[int]:
    headers = {"Authorization": f"Bearer {api.keys['ingest']}"}
    limits = httpx.Limits(max_connections=CONSUMERS)
    url = "/v1/customers/hot/entitlements/api_calls/consume"
    async with httpx.AsyncClient(
        base_url=api.url, headers=headers, limits=limits, timeout=60
    ) as http:

        async def consumer(n: int) -> list[int]:
            codes = []
            for k in range(per_consumer):
                codes.append(await send(url, {"amount": 1, "event_id": f"c{n}-{k}"}))
            return codes

        async def send(path: str, body: dict[str, object]) -> int:
            for _attempt in range(3):
                try:
                    return (await http.post(path, json=body)).status_code
                except httpx.TransportError:
                    continue  # a retry with the same event_id is safe: that is the contract
            raise AssertionError("the consume request kept failing")

        results = await asyncio.gather(*(consumer(n) for n in range(CONSUMERS)))
    return Counter(code for codes in results for code in codes)


def test_exactly_the_limit_is_granted_and_counted(api: Api) -> None:
    with api.client("admin") as admin:
        admin.post("/v1/admin/customers", json={"id": "hot"}).raise_for_status()
        admin.put("/v1/admin/customers/hot/subscription", json={"plan": "basic"}).raise_for_status()
    codes = asyncio.run(hammer(api))
    assert codes == {200: 1000, 403: CONSUMERS * PER_CONSUMER - 1000}
    db = api.env["METERLINE_DATABASE_URL"]
    with psycopg.connect(db) as conn:
        granted = conn.execute(
            "SELECT count(*) FROM entitlement_answers WHERE status = 200"
        ).fetchone()
    assert granted == (1000,)
    with RunAggregator(api.env):
        counted = wait_for_ledger(db, 1000)
    assert counted == (1000, 1000.0)
    with api.client() as http:
        check = http.get("/v1/customers/hot/entitlements/api_calls").json()
    assert (check["used"], check["has_access"], check["reason"]) == (1000, False, "limit_exceeded")


class RunAggregator:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env, "METERLINE_AGGREGATOR_PORT": str(free_port())}

    def __enter__(self) -> subprocess.Popen[bytes]:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aggregator"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self.proc

    def __exit__(self, *_exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_for_ledger(db: str, expected: int, timeout: float = 90) -> tuple[int, float]:
    deadline = time.monotonic() + timeout
    found: tuple[int, float] = (0, 0.0)
    while time.monotonic() < deadline:
        with psycopg.connect(db) as conn:
            row = conn.execute(
                "SELECT count(*), coalesce(sum(value), 0)::float8 FROM usage_events "
                "WHERE customer = 'hot'"
            ).fetchone()
        assert row is not None
        found = (int(row[0]), float(row[1]))
        if found[0] >= expected:
            time.sleep(1.0)
            return found
        time.sleep(0.5)
    return found


RAGGED = """
meters:
  - {key: api_calls, aggregation: sum}
features:
  - {key: api_calls, kind: metered, meter: api_calls}
plans:
  - key: free
    default: true
    features:
      api_calls: {limit: 57, reset: billing_period, overage: block}
"""
RAGGED_LIMIT = 57


@pytest.fixture
def ragged_api(api_env: dict[str, str], stripe_emulator: StripeEmulatorHandle) -> Iterator[Api]:
    yield from serve_api(api_env, stripe_emulator, load_catalog(RAGGED))


def test_200_consumers_in_the_last_minutes_of_a_period_ending_at_37(ragged_api: Api) -> None:
    """Over HTTP and through the real aggregator: a monthly period ending at :37 (its last
    37 minutes are read minute by minute), the clock 3 minutes before its end, 200 concurrent
    consumers of 1 unit: exactly the limit granted, and exactly that counted."""
    api = ragged_api
    now = api.clock.now_ms()
    end = (now // 3_600_000 + 1) * 3_600_000 + 37 * 60_000
    start = int(add_months(from_ms(end), -1).timestamp() * 1000)
    api.clock.advance((end - 3 * 60_000 - now) / 1000)
    with api.client("admin") as admin:
        admin.post("/v1/admin/customers", json={"id": "hot"}).raise_for_status()
        period = {
            "current_period_start": iso(from_ms(start)),
            "current_period_end": iso(from_ms(end)),
        }
        admin.put(
            "/v1/admin/customers/hot/subscription", json={"plan": "free", **period}
        ).raise_for_status()
    codes = asyncio.run(hammer(api, per_consumer=1))
    assert codes == {200: RAGGED_LIMIT, 403: CONSUMERS - RAGGED_LIMIT}
    db = api.env["METERLINE_DATABASE_URL"]
    with RunAggregator(api.env):
        assert wait_for_ledger(db, RAGGED_LIMIT) == (RAGGED_LIMIT, float(RAGGED_LIMIT))
    with api.client() as http:
        check = http.get("/v1/customers/hot/entitlements/api_calls").json()
    assert (check["used"], check["period"]["end"]) == (RAGGED_LIMIT, iso(from_ms(end)))
