"""The webhooks admin API on the reporter's app over real Postgres: scope, tenant isolation,
validation (422 naming the field), endpoint lifecycle, secrets, the delivery log and replay."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from meterline.auth import Authenticator
from meterline.clock import SystemClock
from meterline.notify.postgres.deliveries import DeliveryLog
from meterline.notify.postgres.endpoints import EndpointStore
from meterline.tenants import PostgresTenantRepository
from reporter.api import create_app
from reporter.settings import ReporterSettings
from tests.notify.support import Receiver, make_setup

pytestmark = pytest.mark.integration
BASE = "/v1/webhooks/endpoints"


def _client(setup, allow_private: bool) -> TestClient:
    reporter = SimpleNamespace(
        settings=ReporterSettings.model_construct(), pool=setup.pool, store=None,
        clock=SystemClock(), auth=Authenticator(PostgresTenantRepository(setup.pool)),
        endpoints=EndpointStore(setup.pool, allow_private), delivery_log=DeliveryLog(setup.pool),
    )  # fmt: skip
    return TestClient(create_app(reporter))  # type: ignore[arg-type]


@pytest.fixture
def api(pg_conninfo):
    setup = make_setup(pg_conninfo)
    repo = PostgresTenantRepository(setup.pool)
    repo.create_tenant("other")
    keys = {s: repo.create_key("acme", [s])[1] for s in ("admin", "read")}
    keys["other"] = repo.create_key("other", ["admin"])[1]
    with _client(setup, allow_private=True) as client:
        yield client, keys, setup
    setup.pool.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_endpoints_need_an_admin_key(api):
    client, keys, _ = api
    assert client.get(BASE).status_code == 401
    assert client.get(BASE, headers=auth(keys["read"])).status_code == 403
    assert client.get(BASE, headers=auth(keys["admin"])).json() == {"data": []}


def test_create_list_update_delete(api):
    client, keys, _ = api
    h = auth(keys["admin"])
    body = {"url": "https://hooks.example.com/m", "event_types": ["subscription.changed"]}
    created = client.post(BASE, json=body, headers=h)
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["enabled"] is True
    listed = client.get(BASE, headers=h).json()["data"]
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
    url = f"{BASE}/{endpoint['id']}"
    patched = client.patch(url, json={"enabled": False, "event_types": []}, headers=h).json()
    assert patched["enabled"] is False and patched["event_types"] == []
    assert patched["url"] == body["url"]
    moved = client.patch(url, json={"url": "https://b.example.com/"}, headers=h).json()
    assert moved["url"] == "https://b.example.com/" and moved["enabled"] is False
    assert moved["event_types"] == []
    assert client.delete(url, headers=h).status_code == 204
    assert client.get(url, headers=h).status_code == 404


def test_another_tenants_endpoint_is_not_found(api):
    client, keys, _ = api
    made = client.post(BASE, json={"url": "https://a.example.com"}, headers=auth(keys["admin"]))
    url = f"{BASE}/{made.json()['id']}"
    other = auth(keys["other"])
    assert client.get(url, headers=other).status_code == 404
    assert client.patch(url, json={"enabled": False}, headers=other).status_code == 404
    assert client.delete(url, headers=other).status_code == 404
    assert client.post(f"{url}/rotate-secret", headers=other).status_code == 404
    assert client.get(f"{url}/deliveries", headers=other).status_code == 404
    assert client.get(BASE, headers=other).json() == {"data": []}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"url": "ftp://example.com/x"}, "url", "http:// or https://"),
        ({"url": "not a url"}, "url", "spaces"),
        ({"url": "//example.com/x"}, "url", "http:// or https://"),
        ({"url": "https://user:pw@example.com/"}, "url", "credentials"),
        ({"url": "https://example.com:99999/"}, "url", "not a valid URL"),
        ({"url": "https://exa\x00mple.com/"}, "url", "control characters"),
        ({"url": "https://example.com", "event_types": ["nope"]}, "event_types.0", "unknown"),
        ({"url": "https://example.com", "colour": "red"}, "colour", ""),
        ({}, "url", ""),
    ],
)
def test_bad_input_is_a_422_naming_the_field(api, body, field, words):
    client, keys, _ = api
    answer = client.post(BASE, json=body, headers=auth(keys["admin"]))
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert any(e["field"] == field and words in e["message"] for e in errors), errors


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/", "http://localhost/x", "http://10.1.2.3/", "http://[::1]/",
     "http://169.254.169.254/latest/meta-data", "http://192.168.0.1/", "http://[::ffff:10.0.0.1]/"],
)  # fmt: skip
def test_internal_addresses_are_refused_unless_allowed(pg_conninfo, url):
    setup = make_setup(pg_conninfo)
    key = PostgresTenantRepository(setup.pool).create_key("acme", ["admin"])[1]
    try:
        with _client(setup, allow_private=False) as client:
            answer = client.post(BASE, json={"url": url}, headers=auth(key))
            assert answer.status_code == 422
            assert answer.json()["errors"][0]["field"] == "url"
            ok = client.post(BASE, json={"url": "https://hooks.example.com"}, headers=auth(key))
            assert ok.status_code == 201
            patch = client.patch(f"{BASE}/{ok.json()['id']}", json={"url": url}, headers=auth(key))
            assert patch.status_code == 422
    finally:
        setup.pool.close()


def test_rotation_keeps_the_old_secret_for_the_overlap(api):
    client, keys, _ = api
    h = auth(keys["admin"])
    made = client.post(BASE, json={"url": "https://a.example.com"}, headers=h).json()
    url = f"{BASE}/{made['id']}"
    rotated = client.post(f"{url}/rotate-secret", json={"overlap_s": 600}, headers=h).json()
    live = client.get(f"{url}/secrets", headers=h).json()["data"]
    assert [s["secret"] for s in live] == [rotated["secret"], made["secret"]]
    assert live[0]["expires_at"] is None and live[1]["expires_at"] is not None
    client.post(f"{url}/rotate-secret", json={"overlap_s": 0}, headers=h)
    assert len(client.get(f"{url}/secrets", headers=h).json()["data"]) == 1
    bad = client.post(f"{url}/rotate-secret", json={"overlap_s": -1}, headers=h)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "overlap_s"


def test_the_delivery_log_and_replay(api):
    client, keys, setup = api
    h = auth(keys["admin"])
    receiver = Receiver()
    receiver.start()
    try:
        made = client.post(BASE, json={"url": receiver.url}, headers=h).json()
        msg_id = setup.publish("cust_0", 1)
        setup.dispatcher().drain()
        url = f"{BASE}/{made['id']}"
        log = client.get(f"{url}/deliveries", headers=h).json()["data"]
        assert [(d["msg_id"], d["status"], d["customer"]) for d in log] == [
            (msg_id, "succeeded", "cust_0")
        ]
        assert log[0]["attempt_log"][0]["status_code"] == 204
        replay = client.post(f"{url}/messages/{msg_id}/replay", headers=h)
        assert replay.status_code == 202
        assert setup.dispatcher().drain() == 1
        assert [r.msg_id for r in receiver.requests] == [msg_id, msg_id]
        missing = client.post(f"{url}/messages/msg_nope/replay", headers=h)
        assert missing.status_code == 404
        bad = client.get(f"{url}/deliveries?status=lost", headers=h)
        assert bad.status_code == 422
        assert client.get(f"{BASE}/{2**63}", headers=h).status_code == 422
        assert client.post(f"{url}/messages/msg%00x/replay", headers=h).status_code == 422
    finally:
        receiver.stop()


def test_event_types_are_listed(api):
    client, keys, _ = api
    found = client.get("/v1/webhooks/event-types", headers=auth(keys["admin"])).json()["data"]
    assert {t["type"] for t in found} >= {"subscription.changed", "dlq.event_dead_lettered"}
