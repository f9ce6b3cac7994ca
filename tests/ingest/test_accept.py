"""Accepted events reach the topic exactly as sent; duplicates are counted, never produced twice."""

from __future__ import annotations

import time
import uuid

import orjson
from fastapi.testclient import TestClient

from tests.fixtures.services import Topics
from tests.ingest.support import Seeded, bearer, read_topic


def _event(i: int, **extra: object) -> dict[str, object]:
    now = int(time.time() * 1000)
    return {
        "id": f"e-{i}",
        "customer": f"c{i % 3}",
        "meter": "api_calls",
        "value": i,
        "timestamp": now - i,
        **extra,
    }


def test_a_batch_lands_on_the_topic_exactly_as_sent(
    client: TestClient, seeded: Seeded, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    sent = [_event(i, properties={"model": "small"} if i % 2 else None) for i in range(50)]
    for e in sent:
        if e["properties"] is None:
            del e["properties"]
    r = client.post("/v1/events", json=sent, headers=bearer(seeded.acme_ingest))
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 50, "duplicates": 0}
    got = {e.id: e for e in read_topic(kafka_bootstrap, kafka_topics.usage, 50)}
    assert len(got) == 50
    for e in sent:
        on_topic = got[str(e["id"])]
        assert on_topic.tenant_id == seeded.acme_id
        assert (on_topic.customer, on_topic.meter, on_topic.value) == (
            e["customer"],
            e["meter"],
            e["value"],
        )
        assert on_topic.timestamp_ms == e["timestamp"]
        assert on_topic.properties == e.get("properties")


def test_duplicates_within_and_across_requests_are_counted(
    client: TestClient, seeded: Seeded, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    h = bearer(seeded.acme_ingest)
    batch = [_event(1), _event(2), _event(1)]
    assert client.post("/v1/events", json=batch, headers=h).json() == {
        "accepted": 2,
        "duplicates": 1,
    }
    again = [_event(2), _event(3)]
    assert client.post("/v1/events", json=again, headers=h).json() == {
        "accepted": 1,
        "duplicates": 1,
    }
    ids = sorted(e.id for e in read_topic(kafka_bootstrap, kafka_topics.usage, 3))
    assert ids == ["e-1", "e-2", "e-3"]


def test_ndjson_single_and_cloudevents(
    client: TestClient, seeded: Seeded, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    h = bearer(seeded.acme_ingest)
    nd = b"\n".join(orjson.dumps(_event(i)) for i in range(3)) + b"\n"
    r = client.post("/v1/events", content=nd, headers={**h, "Content-Type": "application/x-ndjson"})
    assert r.json() == {"accepted": 3, "duplicates": 0}
    r = client.post("/v1/events", json=_event(10), headers=h)
    assert r.json() == {"accepted": 1, "duplicates": 0}
    ce = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/app",
        "type": "tokens",
        "subject": "cust_9",
        "time": "2026-01-01T00:00:00Z",
        "data": {"total": 42, "m": "x"},
    }
    ce["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    r = client.post(
        "/v1/events",
        content=orjson.dumps(ce),
        headers={**h, "Content-Type": "application/cloudevents+json"},
    )
    assert r.json() == {"accepted": 1, "duplicates": 0}, r.text
    batch = [
        {**ce, "id": "ce-2", "type": "api_calls", "data": {"value": 5}},
        {**ce, "id": "ce-3", "type": "api_calls"},
        {**ce, "id": "ce-4", "data": 7},
        {**ce, "id": "ce-5", "data": {"total": 2.5, "m": "y", "n": 1}},
    ]  # several: the rules look at each column at once (meterline/events/rules.py)
    r = client.post(
        "/v1/events",
        content=orjson.dumps(batch),
        headers={**h, "Content-Type": "application/cloudevents-batch+json"},
    )
    assert r.json() == {"accepted": 4, "duplicates": 0}, r.text
    got = {e.id: e for e in read_topic(kafka_bootstrap, kafka_topics.usage, 9)}
    assert (got["ce-1"].customer, got["ce-1"].meter, got["ce-1"].value) == ("cust_9", "tokens", 42)
    assert got["ce-1"].properties == {"m": "x"}
    assert (got["ce-2"].value, got["ce-3"].value) == (5, 1)
    assert (got["ce-4"].value, got["ce-4"].properties) == (7, None)
    assert (got["ce-5"].value, got["ce-5"].properties) == (2.5, {"m": "y", "n": 1})


def test_a_key_of_tenant_a_never_writes_as_tenant_b(
    client: TestClient, seeded: Seeded, kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    ev = _event(1)
    for key in (seeded.acme_ingest, seeded.globex_ingest):
        assert client.post("/v1/events", json=ev, headers=bearer(key)).json()["accepted"] == 1
    r = client.post(
        "/v1/events", json={**ev, "tenant": seeded.globex_id}, headers=bearer(seeded.acme_ingest)
    )
    assert r.status_code == 422
    got = read_topic(kafka_bootstrap, kafka_topics.usage, 2)
    assert sorted(e.tenant_id for e in got) == sorted([seeded.acme_id, seeded.globex_id])
    assert {e.key for e in got} == {
        f"{seeded.acme_id}/c1".encode(),
        f"{seeded.globex_id}/c1".encode(),
    }


def test_unique_ids_per_tenant_dedupe_is_tenant_scoped(client: TestClient, seeded: Seeded) -> None:
    ev = _event(5, id=str(uuid.uuid4()))
    assert client.post("/v1/events", json=ev, headers=bearer(seeded.acme_ingest)).json() == {
        "accepted": 1,
        "duplicates": 0,
    }
    assert client.post("/v1/events", json=ev, headers=bearer(seeded.globex_ingest)).json() == {
        "accepted": 1,
        "duplicates": 0,
    }
