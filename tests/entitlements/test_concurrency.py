"""200 concurrent consumers against a limit of 1,000: exactly 1,000 granted, and the pipeline
(the real aggregator, as a subprocess) later counts exactly 1,000."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.entitlements.conftest import Api, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CONSUMERS = 200
PER_CONSUMER = 6


async def hammer(api: Api) -> Counter[int]:
    headers = {"Authorization": f"Bearer {api.keys['ingest']}"}
    limits = httpx.Limits(max_connections=CONSUMERS)
    url = "/v1/customers/hot/entitlements/api_calls/consume"
    async with httpx.AsyncClient(
        base_url=api.url, headers=headers, limits=limits, timeout=60
    ) as http:

        async def consumer(n: int) -> list[int]:
            codes = []
            for k in range(PER_CONSUMER):
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
