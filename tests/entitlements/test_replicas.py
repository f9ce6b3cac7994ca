"""Two real entitlements processes on one Postgres and Redis: a change made through one is seen
by the other within 100 ms, though its caches would keep the old answer for 30 s."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from bench.reliability.replicas import Replica, stop_all
from tests.entitlements.catalogs import example_catalog
from tests.entitlements.conftest import make_tenant, mark_view_ready
from tests.fixtures.stripe import StripeEmulatorHandle

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
CHECK = "/v1/customers/{}/entitlements/api_calls"
CACHED_S = "30"  # a stale answer would outlive every wait below
CHANNEL = "ml:entitlements:changes"


@pytest.fixture
def replicas(
    api_env: dict[str, str], stripe_emulator: StripeEmulatorHandle, tmp_path: Path
) -> Iterator[tuple[dict[str, str], list[Replica]]]:
    _tenant, keys = make_tenant(
        api_env["METERLINE_DATABASE_URL"], example_catalog(), stripe_emulator
    )
    mark_view_ready(api_env)
    env = {
        **api_env,
        "METERLINE_ENTITLEMENTS_DECISION_CACHE_TTL": CACHED_S,
        "METERLINE_ENTITLEMENTS_PLAN_CACHE_TTL": CACHED_S,
    }
    made = [Replica("entitlements_api", f"entitlements-{n}", env, tmp_path) for n in "ab"]
    try:
        for r in made:
            r.start()
        _within(lambda: _subscribers(api_env) == 2, 10)
        yield keys, made
    finally:
        stop_all(made)


def _subscribers(env: dict[str, str]) -> int:
    found = redis.Redis.from_url(env["METERLINE_REDIS_URL"]).pubsub_numsub(CHANNEL)
    return int(found[0][1]) if found else 0


def _within(check: Callable[[], bool], seconds: float) -> float:
    start = time.monotonic()
    while not check():
        elapsed = time.monotonic() - start
        assert elapsed < seconds, f"not within {seconds} s"
        time.sleep(0.002)
    return time.monotonic() - start


def _client(replica: Replica, key: str) -> httpx.Client:
    return httpx.Client(base_url=replica.url, headers={"Authorization": f"Bearer {key}"})


def test_a_consume_on_a_that_uses_the_limit_up_is_refused_on_b_within_100_ms(
    replicas: tuple[dict[str, str], list[Replica]],
) -> None:
    keys, (a, b) = replicas
    with _client(a, keys["app"]) as on_a, _client(b, keys["app"]) as on_b:
        assert on_b.get(CHECK.format("c1")).json()["has_access"] is True  # cached on b now
        assert on_b.get(CHECK.format("c1")).json()["remaining"] == 50
        used = on_a.post(CHECK.format("c1") + "/consume", json={"amount": 50, "event_id": "e1"})
        assert used.status_code == 200 and used.json()["remaining"] == 0
        seen = _within(lambda: on_b.get(CHECK.format("c1")).json()["has_access"] is False, 0.1)
        refused = on_b.post(CHECK.format("c1") + "/consume", json={"amount": 1, "event_id": "e2"})
    assert refused.status_code == 403 and refused.json()["reason"] == "limit_exceeded"
    assert seen < 0.1


def test_an_admin_grant_on_a_is_visible_on_b_within_100_ms_even_after_a_dropped_connection(
    replicas: tuple[dict[str, str], list[Replica]], api_env: dict[str, str]
) -> None:
    keys, (a, b) = replicas
    grant = {"feature": "api_calls", "kind": "top_up", "amount": 10}
    with _client(a, keys["admin"]) as admin, _client(b, keys["read"]) as on_b:
        assert on_b.get(CHECK.format("c2")).json()["limit"] == 50  # plan data cached on b
        assert admin.post("/v1/admin/customers", json={"id": "c2"}).status_code == 201
        assert admin.post("/v1/admin/customers/c2/grants", json=grant).status_code == 201
        _within(lambda: on_b.get(CHECK.format("c2")).json()["limit"] == 60, 0.1)
        redis.Redis.from_url(api_env["METERLINE_REDIS_URL"]).client_kill_filter(_type="pubsub")
        _within(lambda: _subscribers(api_env) == 2, 10)  # both listened again
        assert on_b.get(CHECK.format("c2")).json()["limit"] == 60
        assert admin.post("/v1/admin/customers/c2/grants", json=grant).status_code == 201
        _within(lambda: on_b.get(CHECK.format("c2")).json()["limit"] == 70, 0.1)
