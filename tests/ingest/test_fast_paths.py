"""The hot path's shortcuts answer exactly as the paths they stand in for.

- `validate_event`'s plain-shape shortcut accepts only what the full checker accepts, as the
  very same event (Hypothesis, over valid and invalid events alike).
- The Redis deduper's packed call keeps each id's answer in its place, whatever the ids hold.
- The bare POST /v1/events handler (`create_server`) answers as the FastAPI route
  (`create_app`): same status, body and Retry-After for every outcome of the contract.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from ingest.app import Dependencies, create_app, create_server
from ingest.caches import KeyCache, MeterCache
from ingest.ratelimit import RateLimitedSink, TokenBuckets
from ingest.sinks import MemorySink
from meterline.catalog import parse_catalog
from meterline.catalog.repository import MemoryCatalogRepository
from meterline.dedupe import RedisDeduper
from meterline.events import MAX_FUTURE_MS, Rules, UsageEvent, _accept_plain, _checked
from meterline.events import validate_event as validate
from meterline.redis import connect_async
from meterline.tenants import MemoryTenantRepository
from tests.ingest.support import CATALOG

NOW = 1_800_000_000_000
RULES = Rules(now_ms=NOW, meters={"api_calls": "value", "": "value"})
DAY = 86_400_000

texts = st.text(max_size=130) | st.sampled_from(["e1", "x" * 128, "x" * 129, "a\x00b", "é\u00a0"])
numbers = (
    st.integers(-5, 10**16)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([True, False, 1e15, 1e15 + 1, -0.0, math.nan, 10**20])
)
timestamps = (
    st.integers(NOW - 36 * DAY, NOW + MAX_FUTURE_MS + 5)
    | st.sampled_from(["2027-01-15T08:00:00Z", "2027-01-15T08:00:00", "2027-01-15", "soon", 1.5])
    | st.none()
)
anything = st.none() | st.booleans() | texts | numbers | st.lists(st.integers(), max_size=2)
properties = st.dictionaries(st.text(max_size=3), st.integers(), max_size=34) | anything
raw_events = st.fixed_dictionaries(
    {},
    optional={
        "id": texts | anything,
        "customer": texts | anything,
        "meter": st.sampled_from(["api_calls", "tokens", ""]) | anything,
        "value": numbers | anything,
        "timestamp": timestamps | anything,
        "properties": properties,
        "tenant": anything,
    },
)


@given(raw_events | anything)
def test_the_plain_shortcut_never_disagrees_with_the_full_checker(raw: Any) -> None:
    full = _checked(raw, 7, RULES, 3)
    quick = _accept_plain(raw, 7, RULES)
    assert quick is None or (isinstance(full, UsageEvent) and quick == full)
    assert validate(raw, 7, RULES, 3) == full


@given(
    st.fixed_dictionaries(
        {
            "id": st.text("abc-_:./0123456789", min_size=1, max_size=128),
            "customer": st.text("xyz_09", min_size=1, max_size=128),
            "meter": st.just("api_calls"),
        },
        optional={
            "value": st.integers(0, 10**15) | st.floats(0, 1e15),
            "timestamp": st.integers(NOW - 35 * DAY, NOW + MAX_FUTURE_MS),
            "properties": st.dictionaries(st.text(max_size=5), st.integers(), max_size=32),
        },
    )
)
def test_common_valid_events_take_the_shortcut(raw: dict[str, object]) -> None:
    assert _accept_plain(raw, 7, RULES) == _checked(raw, 7, RULES, None)


def test_packed_dedupe_calls_keep_each_answer_in_place(redis_url: str) -> None:
    async def scenario() -> None:
        d = RedisDeduper(connect_async(redis_url), f"fp{uuid.uuid4().hex[:6]}", 60)
        odd = ["", "a b", "é", "x" * 128, "tab\tin", "{1}:y", "last"]
        await d.mark(1, odd[1::2])
        assert await d.seen(1, odd) == [i % 2 == 1 for i in range(len(odd))]
        many = [f"m-{i}" for i in range(1000)]
        await d.mark(1, many[::3])
        assert await d.seen(1, many) == [i % 3 == 0 for i in range(1000)]
        assert await d.seen(2, many[:3]) == [False] * 3
        with pytest.raises(ValueError):
            await d.seen(1, ["a\nb"])
        await d.close()

    asyncio.run(scenario())


@pytest.fixture
def both() -> Iterator[tuple[TestClient, TestClient, dict[str, str]]]:
    """The FastAPI app and the server, each on its own sink (rate 100 events/s) and the same
    in-memory keys and catalog; and the Authorization header of each scope's key."""
    tenants, catalogs = MemoryTenantRepository(), MemoryCatalogRepository()
    acme = tenants.create_tenant("acme")
    catalogs.apply(acme.id, parse_catalog(CATALOG))
    keys = {s: tenants.create_key("acme", [s])[1] for s in ("ingest", "read")}

    def deps() -> Dependencies:
        return Dependencies(
            keys=KeyCache(tenants, "ingest"),
            meters=MeterCache(catalogs),
            sink=RateLimitedSink(MemorySink(), TokenBuckets(100.0, {})),
            max_body_bytes=32768,
        )

    with TestClient(create_app(deps())) as app, TestClient(create_server(deps())) as server:
        yield app, server, {s: f"Bearer {k}" for s, k in keys.items()}


def _event(i: int, **extra: object) -> dict[str, object]:
    return {"id": f"e-{i}", "customer": "c", "meter": "api_calls", **extra}


def test_the_bare_handler_answers_as_the_fastapi_route(
    both: tuple[TestClient, TestClient, dict[str, str]],
) -> None:
    app, server, auth = both
    json = "application/json"
    cases: list[tuple[int, str | None, str, bytes]] = [
        (202, auth["ingest"], json, orjson.dumps(_event(1))),
        (
            202,
            auth["ingest"],
            "application/x-ndjson",
            b'{"id":"n","customer":"c","meter":"tokens"}',
        ),
        (401, None, json, b"{}"),
        (401, "Basic x", json, b"{}"),
        (403, auth["read"], json, b"{}"),
        (415, auth["ingest"], "text/plain", b"{}"),
        (413, auth["ingest"], json, b"[" + b" " * 40_000 + b"]"),
        (413, auth["ingest"], json, b"[" + b",".join([b"{}"] * 1001) + b"]"),
        (422, auth["ingest"], json, b"{not json"),
        (422, auth["ingest"], json, orjson.dumps([_event(1, value=-1), "x", _event(2, extra=1)])),
        (202, auth["ingest"], json, orjson.dumps([_event(i) for i in range(600)])),  # into debt
        (429, auth["ingest"], json, orjson.dumps(_event(9))),
    ]
    for status, key, ctype, body in cases:
        headers = {"Content-Type": ctype} | ({"Authorization": key} if key else {})
        first, second = (c.post("/v1/events", content=body, headers=headers) for c in (app, server))
        assert (first.status_code, first.content) == (status, second.content), second.text
        assert second.status_code == status
        assert (
            ("retry-after" in first.headers) == ("retry-after" in second.headers) == (status == 429)
        )
        assert second.headers["content-type"] == "application/json"
    assert [c.get("/healthz").status_code for c in (app, server)] == [200, 200]
    assert server.get("/v1/events").status_code == 405


def test_the_server_counts_its_requests_by_status(
    both: tuple[TestClient, TestClient, dict[str, str]],
) -> None:
    _, server, auth = both
    server.post("/v1/events", json=_event(1), headers={"Authorization": auth["ingest"]})
    server.post("/v1/events", json=_event(2))
    metrics = server.get("/metrics").text
    assert 'meterline_ingest_requests_total{status="202"} 1.0' in metrics
    assert 'meterline_ingest_requests_total{status="401"} 1.0' in metrics
    assert "meterline_ingest_request_seconds_count 2.0" in metrics
