"""Every error status of the contract, produced against the real services."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from meterline.events import RESERVATION_PROPERTY, UsageEvent, encode_event
from meterline.kafka import ensure_topics
from meterline.kafka.config import MESSAGE_MAX_BYTES, MESSAGE_OVERHEAD
from meterline.tenants import PostgresTenantRepository
from meterline_devstack.broker import broker_process
from meterline_devstack.process import ManagedProcess
from tests.fixtures.services import Topics
from tests.ingest.support import Seeded, bearer, read_topic
from tests.unit.test_events import nested


def _event(i: int = 1, **extra: object) -> dict[str, object]:
    return {"id": f"e-{i}", "customer": "c", "meter": "api_calls", **extra}


def test_401_for_missing_malformed_unknown_and_revoked_keys(
    make_client: Callable[..., TestClient], seeded: Seeded, pg_conninfo: str
) -> None:
    client = make_client(auth_cache_s=0.001)
    for headers in ({}, {"Authorization": "Basic abc"}, bearer("mlk_key_nope_secret")):
        r = client.post("/v1/events", json=_event(), headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "unauthorized"
    assert client.post("/v1/events", json=_event(), headers=bearer(seeded.acme_ingest)).is_success
    with ConnectionPool(pg_conninfo, min_size=1, max_size=1) as pool:
        PostgresTenantRepository(pool).revoke_key(seeded.acme_ingest_key_id)
    time.sleep(0.01)  # past the key cache's 1 ms; no other cache keeps the key
    r = client.post("/v1/events", json=_event(2), headers=bearer(seeded.acme_ingest))
    assert r.status_code == 401


def test_403_for_a_key_without_the_ingest_scope(client: TestClient, seeded: Seeded) -> None:
    r = client.post("/v1/events", json=_event(), headers=bearer(seeded.acme_read))
    assert r.status_code == 403
    assert "ingest" in r.json()["message"]


def test_413_for_too_many_events_or_bytes(client: TestClient, seeded: Seeded) -> None:
    h = bearer(seeded.acme_ingest)
    r = client.post("/v1/events", json=[_event(i) for i in range(1001)], headers=h)
    assert r.status_code == 413
    big = [_event(i, properties={"pad": "x" * 2000}) for i in range(600)]
    r = client.post("/v1/events", json=big, headers=h)
    assert r.status_code == 413
    assert "1048576 bytes" in r.json()["message"]


def test_415_for_unknown_content_types(client: TestClient, seeded: Seeded) -> None:
    h = bearer(seeded.acme_ingest)
    for ctype in ("text/plain", "application/x-www-form-urlencoded", ""):
        r = client.post("/v1/events", content=b"{}", headers={**h, "Content-Type": ctype})
        assert r.status_code == 415, ctype


def test_422_lists_every_bad_event_and_accepts_nothing(
    client: TestClient, seeded: Seeded, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    now = int(time.time() * 1000)
    batch = [
        _event(0),
        {"id": "", "customer": "c", "meter": "nope", "value": -1, "extra": 1},
        _event(2, timestamp=now + 3_600_000),
        _event(3, timestamp=now - 40 * 86_400_000, properties={str(i): i for i in range(40)}),
        "not an object",
        _event(5, properties=nested(300)),  # valid JSON that orjson cannot write back
    ]
    r = client.post("/v1/events", json=batch, headers=bearer(seeded.acme_ingest))
    assert r.status_code == 422
    found = {(e["index"], e["field"]) for e in r.json()["errors"]}
    assert found == {
        (1, "extra"),
        (1, "id"),
        (1, "meter"),
        (1, "value"),
        (2, "timestamp"),
        (3, "timestamp"),
        (3, "properties"),
        (4, ""),
        (5, "properties"),
    }
    alone = [_event(0), _event(1, properties=nested(300))]  # the rest of the batch is valid
    r = client.post("/v1/events", json=alone, headers=bearer(seeded.acme_ingest))
    assert r.status_code == 422
    assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [(1, "properties")]
    r = client.post(
        "/v1/events",
        content=b"{not json",
        headers={**bearer(seeded.acme_ingest), "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    ce = {"id": "x", "type": "api_calls", "specversion": "1.0", "source": "/s"}
    r = client.post(
        "/v1/events",
        content=orjson.dumps(ce),
        headers={**bearer(seeded.acme_ingest), "Content-Type": "application/cloudevents+json"},
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [{"index": 0, "field": "subject", "message": "required, a string"}]


def _at_the_limit(tenant: int, event_id: str, extra: int = 0) -> dict[str, object]:
    """An event whose Kafka message is `extra` bytes past the producer's limit."""
    ts = int(time.time() * 1000)
    props = {"blob": ""}
    value = encode_event(UsageEvent(tenant, event_id, "c", "api_calls", 1.0, ts, ts, props))
    room = MESSAGE_MAX_BYTES - MESSAGE_OVERHEAD - len(f"{tenant}/c") - len(value)
    return _event(timestamp=ts, properties={"blob": "x" * (room + extra)}) | {"id": event_id}


def test_422_for_an_event_too_large_for_kafka_and_nothing_of_its_batch_is_written(
    client: TestClient, seeded: Seeded, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    """Under the 1 MiB body limit, over the producer's message size: refused up front by
    index and field; before, one such event answered 500, and with a small event beside it
    503 while the small one was written."""
    h = bearer(seeded.acme_ingest)
    over = _at_the_limit(seeded.acme_id, "over", 1)
    r = client.post("/v1/events", json=over, headers=h)
    assert r.status_code == 422, r.text
    assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [(0, "properties")]
    r = client.post("/v1/events", json=[_event(1), over], headers=h)
    assert r.status_code == 422, r.text
    assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [(1, "properties")]
    fits = _at_the_limit(seeded.acme_id, "fits")
    r = client.post("/v1/events", json=[_event(2), fits], headers=h)
    assert r.status_code == 202, r.text
    got = read_topic(kafka_bootstrap, kafka_topics.usage, 2)
    assert sorted(e.id for e in got) == ["e-2", "fits"]


def test_422_for_the_reserved_property(
    client: TestClient, seeded: Seeded, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    """An ingest event must not pose as the event of an entitlement consume."""
    h = bearer(seeded.acme_ingest)
    posing = _event(2, properties={RESERVATION_PROPERTY: True})
    for body in (posing, [_event(1), posing]):
        r = client.post("/v1/events", json=body, headers=h)
        assert r.status_code == 422, r.text
        index = 1 if isinstance(body, list) else 0
        found = [(e["index"], e["field"]) for e in r.json()["errors"]]
        assert found == [(index, f"properties.{RESERVATION_PROPERTY}")]
    assert client.post("/v1/events", json=_event(3), headers=h).status_code == 202
    assert [e.id for e in read_topic(kafka_bootstrap, kafka_topics.usage, 1)] == ["e-3"]


def test_429_when_the_tenant_exceeds_its_rate(
    make_client: Callable[..., TestClient], seeded: Seeded
) -> None:
    client = make_client(tenant_rates={"acme": 10})
    h = bearer(seeded.acme_ingest)
    assert client.post("/v1/events", json=[_event(i) for i in range(500)], headers=h).is_success
    r = client.post("/v1/events", json=_event(999), headers=h)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 30  # the bucket's debt of ~490 events at 10/s
    other = client.post("/v1/events", json=_event(1), headers=bearer(seeded.globex_ingest))
    assert other.status_code == 202


@pytest.fixture
def private_broker(tmp_path: Path, kafka_topics: Topics) -> Iterator[tuple[ManagedProcess, str]]:
    proc, url = broker_process(tmp_path)
    proc.start()
    try:
        ensure_topics(url, [kafka_topics.usage], 1)
        yield proc, url
    finally:
        proc.stop()


def test_503_when_the_broker_is_gone_and_429_when_the_queue_is_full(
    make_client: Callable[..., TestClient],
    seeded: Seeded,
    private_broker: tuple[ManagedProcess, str],
) -> None:
    proc, url = private_broker
    client = make_client(
        bootstrap=url, produce_timeout_s=1.0, producer_queue_max=5, graceful_timeout_s=0.5
    )
    h = bearer(seeded.acme_ingest)
    assert client.get("/readyz").json()["checks"]["broker"] == "ok"
    assert client.post("/v1/events", json=[_event(i) for i in range(3)], headers=h).is_success
    proc.stop()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["broker"] == "failing"
    r = client.post("/v1/events", json=[_event(i) for i in range(3, 6)], headers=h)
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
    r = client.post("/v1/events", json=[_event(i) for i in range(6, 9)], headers=h)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"
    assert "queue" in r.json()["message"]
