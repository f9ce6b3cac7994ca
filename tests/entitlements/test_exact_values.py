"""Exact values end to end (issue 19, item 10) over HTTP against real Postgres, Redis, the
broker, ingest and the aggregator: ten consumes of 0.1 fill a limit of 1 exactly, ten events of
1e15 and one of 3 keep the 3, in the rollups, the Redis view, the usage API and the decisions;
a value beyond the rule (`meterline.values`) is refused with a 422 naming its field."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from meterline.catalog import load_catalog
from meterline.catalog.model import Aggregation
from meterline.clock import to_ms
from meterline.postgres import open_pool
from meterline.redis import connect as redis_connect
from meterline.view import RedisUsageView
from meterline.view.postgres.rebuild import stored_offsets
from tests.aggregator.support import wait_for
from tests.entitlements.conftest import Api, serve_api
from tests.entitlements.test_concurrency import RunAggregator
from tests.fixtures.stripe import StripeEmulatorHandle

pytestmark = pytest.mark.integration
CATALOG = """
meters:
  - {key: calls, aggregation: sum}
  - {key: tenths, aggregation: sum}
  - {key: tokens, aggregation: sum}
features:
  - {key: calls, kind: metered, meter: calls}
  - {key: tenths, kind: metered, meter: tenths}
plans:
  - key: free
    default: true
    features:
      calls: {limit: 1, reset: month, overage: block}
      tenths: {limit: 0.3, reset: month, overage: block}
"""
BIG = Decimal(10**16 + 3)


@pytest.fixture
def api(api_env: dict[str, str], stripe_emulator: StripeEmulatorHandle) -> Iterator[Api]:
    yield from serve_api(api_env, stripe_emulator, load_catalog(CATALOG))


def consume(api: Api, customer: str, feature: str, amount: Any, event_id: str) -> httpx.Response:
    with api.client("ingest") as http:
        path = f"/v1/customers/{customer}/entitlements/{feature}/consume"
        return http.post(path, json={"amount": amount, "event_id": event_id})


def granted(api: Api, feature: str, n: int) -> list[int]:
    return [consume(api, "d1", feature, 0.1, f"{feature}-{i}").status_code for i in range(n)]


def rollup_sum(api: Api, customer: str, meter: str) -> Decimal:
    with psycopg.connect(api.env["METERLINE_DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(value), 0), count(*) FROM usage_rollups_minute "
            "WHERE customer = %s AND meter = %s",
            (customer, meter),
        ).fetchone()
    assert row is not None
    return Decimal(row[0])


def usage_text(api: Api, customer: str, meter: str) -> str:
    now = datetime.now(UTC)
    params = {
        "customer": customer,
        "meter": meter,
        "from": (now - timedelta(days=1)).isoformat(),
        "to": (now + timedelta(days=1)).isoformat(),
        "window": "day",
    }
    with api.client() as http:
        answer = http.get("/v1/usage", params=params)
    assert answer.status_code == 200, answer.text
    return answer.text


def view_usage(api: Api, customer: str, meter: str) -> Decimal:
    view = RedisUsageView(redis_connect(api.env["METERLINE_REDIS_URL"]), "ml")
    now = to_ms(datetime.now(UTC))
    day = 86_400_000
    return view.usage(api.tenant_id, customer, meter, Aggregation.SUM, now - day, now + day)


def wait_idle(api: Api, ledger_rows: int) -> None:
    """Until the ledger holds `ledger_rows` events and the view has applied all of them."""
    db = api.env["METERLINE_DATABASE_URL"]
    view = RedisUsageView(redis_connect(api.env["METERLINE_REDIS_URL"]), "ml")

    def counted() -> bool:
        with psycopg.connect(db) as conn:
            row = conn.execute("SELECT count(*) FROM usage_events").fetchone()
        return row is not None and int(row[0]) >= ledger_rows

    wait_for(counted, 90, "the events to be counted")
    with open_pool(db, max_size=1) as pool:
        wait_for(lambda: view.watermarks() == stored_offsets(pool), 60, "the view to catch up")


def test_tenths_and_big_values_are_exact_everywhere(api: Api, ingest: httpx.Client) -> None:
    assert granted(api, "calls", 11) == [200] * 10 + [403]
    assert granted(api, "tenths", 4) == [200] * 3 + [403]
    big = [{"id": f"b{i}", "customer": "big", "meter": "tokens", "value": 1e15} for i in range(10)]
    big.append({"id": "b-3", "customer": "big", "meter": "tokens", "value": 3})
    assert ingest.post("/v1/events", json=big).status_code == 202
    with RunAggregator(api.env):
        wait_idle(api, 10 + 3 + 11)
    assert rollup_sum(api, "d1", "calls") == 1
    assert rollup_sum(api, "d1", "tenths") == Decimal("0.3")
    assert rollup_sum(api, "big", "tokens") == BIG
    assert view_usage(api, "d1", "calls") == 1
    assert view_usage(api, "big", "tokens") == BIG
    assert usage_text(api, "d1", "calls").endswith('"total":1}')
    assert usage_text(api, "big", "tokens").endswith('"total":10000000000000003}')
    with api.client() as http:
        decision = http.get("/v1/customers/d1/entitlements/tenths").text
    assert '"limit":0.3,' in decision and '"used":0.3,' in decision
    assert consume(api, "d1", "calls", 0.1, "calls-late").status_code == 403


def test_values_beyond_the_rule_are_refused_at_ingest_and_consume(
    api: Api, ingest: httpx.Client
) -> None:
    for value in (0.30000000000000004, 1e-7, 123456789012345.6):
        good = {"id": "ok-1", "customer": "d2", "meter": "calls", "value": 1}
        bad = {"id": "bad-1", "customer": "d2", "meter": "calls", "value": value}
        refused = ingest.post("/v1/events", json=[good, bad])
        assert refused.status_code == 422, refused.text
        assert [(e["index"], e["field"]) for e in refused.json()["errors"]] == [(1, "value")]
        answer = consume(api, "d2", "calls", value, "bad-consume")
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["amount"]
        with api.client() as http:
            check = http.get("/v1/customers/d2/entitlements/calls", params={"amount": value})
        assert check.status_code == 422, check.text
    with api.client() as http:
        used = http.get("/v1/customers/d2/entitlements/calls").json()["used"]
    assert used == 0  # nothing of a refused batch or consume was written
