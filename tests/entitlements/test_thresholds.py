"""Entitlement notices end to end: consumes against the real API (Postgres, Redis, Kafka),
notices written with the outbox, delivered by the real dispatcher to a real HTTP receiver and
verified with the SDK's `meterline_sdk.webhooks.verify`."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from meterline.catalog import load_catalog
from meterline.notify.postgres.endpoints import EndpointStore
from meterline.postgres import open_pool
from meterline_sdk.webhooks import verify
from tests.entitlements.conftest import Api, serve_api
from tests.entitlements.test_concurrency import RunAggregator
from tests.fixtures.stripe import StripeEmulatorHandle
from tests.notify.support import Receiver, Setup

pytestmark = pytest.mark.integration

CATALOG = """
meters: [{key: api_calls, aggregation: sum}]
features: [{key: api_calls, kind: metered, meter: api_calls}]
plans:
  - key: free
    default: true
    notify_at: [50, 80, 100]
    features:
      api_calls: {limit: 100, reset: month, overage: block}
  - key: pro
    price: {amount: 900, currency: usd, interval: month}
    metered_prices: {api_calls: {unit_amount_decimal: "0.05", currency: usd}}
    features:
      api_calls: {limit: 10, reset: month, overage: allow, notify_at: [80]}
"""
THREADS = 20


@pytest.fixture
def api(api_env: dict[str, str], stripe_emulator: StripeEmulatorHandle) -> Iterator[Api]:
    yield from serve_api(api_env, stripe_emulator, load_catalog(CATALOG))


@pytest.fixture
def hooks(api: Api) -> Iterator[tuple[Setup, Receiver, str]]:
    """A real receiver registered as the tenant's endpoint, and the real dispatcher's kit."""
    pool = open_pool(api.env["METERLINE_DATABASE_URL"], max_size=4)
    setup = Setup(pool, api.tenant_id, EndpointStore(pool, allow_private=True))
    receiver = Receiver()
    types = ["entitlement.threshold_reached", "entitlement.limit_exceeded"]
    _, secret = setup.endpoint(receiver.start(), types)
    yield setup, receiver, secret
    receiver.stop()
    pool.close()


def consume(
    api: Api, customer: str, event_id: str, amount: float = 1, http: httpx.Client | None = None
) -> int:
    path = f"/v1/customers/{customer}/entitlements/api_calls/consume"
    if http is None:
        with api.client("ingest") as own:
            return own.post(path, json={"amount": amount, "event_id": event_id}).status_code
    return http.post(path, json={"amount": amount, "event_id": event_id}).status_code


def delivered(hooks: tuple[Setup, Receiver, str]) -> list[dict[str, Any]]:
    """Deliver everything due with the real dispatcher; every request verified by the SDK."""
    setup, receiver, secret = hooks
    setup.dispatcher().drain()
    return [verify(r.body, r.headers, secret) for r in receiver.requests]


def notices(events: list[dict[str, Any]], customer: str) -> Counter[str]:
    return Counter(
        f"{e['type']}:{e['data'].get('threshold', '')}"
        for e in events
        if e["data"]["customer"] == customer
    )


def test_racing_consumes_to_the_limit_announce_50_80_100_once_each(api: Api, hooks) -> None:
    codes: Counter[int] = Counter()
    lock = threading.Lock()

    def consumer(n: int) -> None:
        with api.client("ingest") as http:
            for k in range(6):
                code = consume(api, "racer", f"r{n}-{k}", http=http)
                repeat = consume(api, "racer", f"r{n}-{k}", http=http)  # the first answer again
                with lock:
                    codes[code] += 1
                    codes[-repeat] += 1

    threads = [threading.Thread(target=consumer, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == {200: 100, 403: THREADS * 6 - 100, -200: 100, -403: THREADS * 6 - 100}
    events = delivered(hooks)
    assert notices(events, "racer") == {
        "entitlement.threshold_reached:50": 1,
        "entitlement.threshold_reached:80": 1,
        "entitlement.threshold_reached:100": 1,
        "entitlement.limit_exceeded:": 1,
    }
    reached = {e["data"]["threshold"]: e["data"] for e in events if "threshold" in e["data"]}
    assert reached[100]["used"] == 100 and reached[100]["limit"] == 100
    assert reached[50]["used"] >= 50 and reached[50]["feature"] == "api_calls"
    assert set(reached[80]["period"]) == {"start", "end"}


def test_an_allowed_overage_announces_its_threshold_and_passing_the_limit_once(
    api: Api, hooks
) -> None:
    with api.client("admin") as admin:
        admin.post("/v1/admin/customers", json={"id": "big"}).raise_for_status()
        admin.put("/v1/admin/customers/big/subscription", json={"plan": "pro"}).raise_for_status()
    assert [consume(api, "big", f"b{k}") for k in range(14)] == [200] * 14
    assert notices(delivered(hooks), "big") == {
        "entitlement.threshold_reached:80": 1,
        "entitlement.limit_exceeded:": 1,
    }


def test_thresholds_count_grants_and_are_announced_when_a_grant_runs_out(api: Api, hooks) -> None:
    with api.client("admin") as admin:
        admin.post("/v1/admin/customers", json={"id": "credit"}).raise_for_status()
        grant = {"feature": "api_calls", "kind": "credit", "amount": 100}
        created = admin.post("/v1/admin/customers/credit/grants", json=grant)
        created.raise_for_status()
        assert consume(api, "credit", "c1", 120) == 200  # 120 of 100 + 100: 50% only
        assert notices(delivered(hooks), "credit") == {"entitlement.threshold_reached:50": 1}
        admin.post(f"/v1/admin/grants/{created.json()['id']}/void").raise_for_status()
    assert consume(api, "credit", "c2", 1) == 403  # 120 of 100 now
    assert notices(delivered(hooks), "credit") == {
        "entitlement.threshold_reached:50": 1,
        "entitlement.threshold_reached:80": 1,
        "entitlement.threshold_reached:100": 1,
        "entitlement.limit_exceeded:": 1,
    }


def test_a_check_announces_the_thresholds_of_ingested_usage(
    api: Api, hooks, ingest: httpx.Client
) -> None:
    event = {"id": "i1", "customer": "ingested", "meter": "api_calls", "value": 85}
    assert ingest.post("/v1/events", json=event).status_code == 202
    with RunAggregator(api.env), api.client() as http:
        deadline = time.monotonic() + 90
        while http.get("/v1/customers/ingested/entitlements/api_calls").json()["used"] < 85:
            assert time.monotonic() < deadline, "the aggregator did not count the event"
            time.sleep(0.3)
        for _ in range(3):
            http.get("/v1/customers/ingested/entitlements/api_calls").raise_for_status()
    assert notices(delivered(hooks), "ingested") == {
        "entitlement.threshold_reached:50": 1,
        "entitlement.threshold_reached:80": 1,
    }


def wait_for(hooks: tuple[Setup, Receiver, str], customer: str, want: set[int]) -> None:
    """Until every threshold of `want` was delivered for `customer` (the detector's pass)."""
    deadline = time.monotonic() + 90
    while not want <= {
        int(k.rsplit(":", 1)[1]) for k in notices(delivered(hooks), customer) if k[-1] != ":"
    }:
        assert time.monotonic() < deadline, f"{customer}: {want} not announced"
        time.sleep(0.3)


def test_usage_only_ingested_is_announced_by_the_detector_once_each(
    api: Api, hooks, ingest: httpx.Client
) -> None:
    """No check and no consume: events through ingest only, counted by the real aggregator,
    marked in Redis, decided by the API's detector, announced through the outbox. A second
    customer reaches 85% the same way and then races 20 consumes (5 refused) with more
    ingested usage: each notice still once."""
    with RunAggregator(api.env):
        for n, (value, want) in enumerate([(30, set()), (25, {50}), (30, {80}), (20, {100})]):
            event = {"id": f"q{n}", "customer": "quiet", "meter": "api_calls", "value": value}
            assert ingest.post("/v1/events", json=event).status_code == 202
            wait_for(hooks, "quiet", want)
        for n, value in enumerate([55, 30]):
            event = {"id": f"r{n}", "customer": "racy", "meter": "api_calls", "value": value}
            assert ingest.post("/v1/events", json=event).status_code == 202
        wait_for(hooks, "racy", {50, 80})
        racers = [threading.Thread(target=consume, args=(api, "racy", f"rc{n}")) for n in range(20)]
        for t in racers:
            t.start()
        event = {"id": "r2", "customer": "racy", "meter": "api_calls", "value": 10}
        assert ingest.post("/v1/events", json=event).status_code == 202
        for t in racers:
            t.join()
        wait_for(hooks, "racy", {100})
        time.sleep(3)  # more passes of the detector over the same customers: nothing new
    events = delivered(hooks)
    assert notices(events, "quiet") == {
        "entitlement.threshold_reached:50": 1,
        "entitlement.threshold_reached:80": 1,
        "entitlement.threshold_reached:100": 1,
    }
    assert notices(events, "racy") == {
        "entitlement.threshold_reached:50": 1,
        "entitlement.threshold_reached:80": 1,
        "entitlement.threshold_reached:100": 1,
        "entitlement.limit_exceeded:": 1,
    }
    quiet = [e["data"] for e in events if e["data"]["customer"] == "quiet"]
    assert [d["used"] for d in quiet] == [55, 85, 105]  # what the view held when decided
    metrics = httpx.get(api.url + "/metrics", timeout=10).text
    decided = _sample(metrics, "meterline_entitlements_usage_notice_customers_total")
    assert decided >= 4  # quiet's four batches at least
    assert _sample(metrics, "meterline_entitlements_usage_notice_backlog") == 0


def _sample(text: str, name: str) -> float:
    (line,) = [x for x in text.splitlines() if x.startswith(name + " ")]
    return float(line.split()[1])
