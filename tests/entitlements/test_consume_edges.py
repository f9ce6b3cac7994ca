"""Consume at its edges (issue 19, items 1, 5, 6 and 7), over HTTP against real Postgres, Redis,
the broker, ingest and the aggregator: pending reservations survive a Redis flush and never
lapse; a publish whose fate is unknown keeps its reservation and its retry republishes the same
event; consume and ingest ids share one space in which every answer is what gets counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
import redis

from meterline.catalog.model import Aggregation
from meterline.clock import to_ms
from meterline.entitlements.consume import ConsumeAsk
from meterline.errors import Unavailable
from meterline.events import UsageEvent
from meterline.postgres import open_pool
from meterline.redis import connect as redis_connect
from meterline.view import RedisUsageView
from meterline.view.postgres.rebuild import rebuild
from tests.aggregator.support import publish
from tests.entitlements.catalogs import example_catalog
from tests.entitlements.conftest import Api, serve_api
from tests.entitlements.test_concurrency import RunAggregator
from tests.fixtures.stripe import StripeEmulatorHandle
from tests.ingest.support import read_topic

pytestmark = pytest.mark.integration
URL = "/v1/customers/{c}/entitlements/api_calls/consume"


def consume(api: Api, customer: str, body: dict[str, Any]) -> httpx.Response:
    with api.client("ingest") as http:
        return http.post(URL.format(c=customer), json=body)


def used(api: Api, customer: str) -> float:
    with api.client() as http:
        return float(http.get(f"/v1/customers/{customer}/entitlements/api_calls").json()["used"])


def rebuild_view(api: Api) -> None:
    """Rebuild the view (or wait for the aggregator's rebuild, when one runs)."""
    view = RedisUsageView(redis_connect(api.env["METERLINE_REDIS_URL"]), "ml")
    with open_pool(api.env["METERLINE_DATABASE_URL"], max_size=2) as pool:
        rebuild(view, pool, lambda _t, _m: Aggregation.SUM)
    assert view.watermarks() is not None


def counted(api: Api, customer: str) -> list[tuple[str, float, int]]:
    """The ledger's (event id, value, timestamp ms) rows of one customer."""
    with psycopg.connect(api.env["METERLINE_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT event_id, value::float8, (extract(epoch FROM ts) * 1000)::bigint "
            "FROM usage_events WHERE customer = %s ORDER BY event_id",
            (customer,),
        ).fetchall()
    return [(str(e), float(v), int(t)) for e, v, t in rows]


def wait_counted(api: Api, customer: str, n: int, timeout: float = 90) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = counted(api, customer)
        if len(rows) >= n:
            time.sleep(1.0)
            return counted(api, customer)
        time.sleep(0.25)
    return counted(api, customer)


def to_period_start(api: Api, customer: str) -> None:
    """Move the API's clock to a minute after the customer's period starts, so hours can pass
    inside one period."""
    with api.client() as http:
        period = http.get(f"/v1/customers/{customer}/entitlements/api_calls").json()["period"]
    start_ms = to_ms(datetime.fromisoformat(period["start"]))
    api.clock.offset_ms = 0
    api.clock.offset_ms = start_ms + 60_000 - api.clock.now_ms()


def test_pending_reservations_survive_a_redis_flush_and_rebuild(api: Api) -> None:
    assert consume(api, "f1", {"amount": 40, "event_id": "f1-a"}).status_code == 200
    redis.Redis.from_url(api.env["METERLINE_REDIS_URL"]).flushall()
    rebuild_view(api)
    assert used(api, "f1") == 40
    over = consume(api, "f1", {"amount": 11, "event_id": "f1-b"})
    assert over.status_code == 403, over.text
    assert consume(api, "f1", {"amount": 10, "event_id": "f1-c"}).status_code == 200


@pytest.fixture
def api_no_ready_cache(
    api_env: dict[str, str], stripe_emulator: StripeEmulatorHandle
) -> Iterator[Api]:
    """The API whose view-readiness answer is never cached (it sees a flush at once)."""
    yield from serve_api(api_env, stripe_emulator, example_catalog(), view_ready_ttl=0.0)


def test_pending_reservations_count_while_the_flushed_view_waits_for_its_rebuild(
    api_no_ready_cache: Api,
) -> None:
    api = api_no_ready_cache
    assert consume(api, "f3", {"amount": 40, "event_id": "f3-a"}).status_code == 200
    redis.Redis.from_url(api.env["METERLINE_REDIS_URL"]).flushall()
    assert used(api, "f3") == 40
    assert consume(api, "f3", {"amount": 11, "event_id": "f3-b"}).status_code == 403
    assert consume(api, "f3", {"amount": 10, "event_id": "f3-c"}).status_code == 200
    rebuild_view(api)
    assert used(api, "f3") == 50


def test_a_reservation_never_lapses_while_its_event_is_not_counted(api: Api) -> None:
    to_period_start(api, "f2")
    assert consume(api, "f2", {"amount": 40, "event_id": "f2-a"}).status_code == 200
    api.clock.advance(2 * 3600)
    assert used(api, "f2") == 40
    assert consume(api, "f2", {"amount": 11, "event_id": "f2-b"}).status_code == 403


class TimesOutOnce:
    """The real publisher, whose first call times out after the message went out anyway (the
    producer's queued messages can still be delivered after a timeout)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def publish(self, events: list[UsageEvent], timeout: float = 10.0) -> None:
        self.calls += 1
        self.real.publish(events, timeout)
        if self.calls == 1:
            raise Unavailable("the broker did not acknowledge in time")


def test_a_publish_timeout_keeps_the_reservation_and_the_retry_republishes_it(api: Api) -> None:
    service: Any = api.deps.service
    real = service._publisher
    service._publisher = TimesOutOnce(real)
    try:
        first = consume(api, "p1", {"amount": 30, "event_id": "p1-a"})
        assert first.status_code == 503, first.text
        assert used(api, "p1") == 30
        assert consume(api, "p1", {"amount": 21, "event_id": "p1-b"}).status_code == 403
        api.clock.advance(90)
        retry = consume(api, "p1", {"amount": 5, "event_id": "p1-a"})
        assert retry.status_code == 200 and retry.json()["used"] == 30, retry.text
    finally:
        service._publisher = real
    sent = read_topic(api.env["METERLINE_KAFKA_BOOTSTRAP"], topic(api), 2)
    copies = {(e.id, e.value, e.timestamp_ms) for e in sent if e.id == "p1-a"}
    assert len([e for e in sent if e.id == "p1-a"]) == 2 and len(copies) == 1
    with RunAggregator(api.env):
        rows = wait_counted(api, "p1", 1)
    ((event_id, value, ts),) = copies
    assert rows == [(event_id, value, ts)] and value == 30
    assert used(api, "p1") == 30


def topic(api: Api) -> str:
    return api.env["METERLINE_KAFKA_TOPIC"]


def send(ingest: httpx.Client, event_id: str, value: float, **extra: Any) -> httpx.Response:
    event = {"id": event_id, "customer": "s1", "meter": "api_calls", "value": value, **extra}
    return ingest.post("/v1/events", json=event)


def test_consume_and_ingest_ids_answer_what_is_counted(api: Api, ingest: httpx.Client) -> None:
    assert send(ingest, "x-1", 2).json() == {"accepted": 1, "duplicates": 0}
    taken = consume(api, "s1", {"amount": 10, "event_id": "x-1"})
    assert taken.status_code == 409 and taken.json()["granted"] is False, taken.text
    assert consume(api, "s1", {"amount": 10, "event_id": "x-1"}).json() == taken.json()
    assert consume(api, "s1", {"amount": 3, "event_id": "x-2"}).status_code == 200
    assert send(ingest, "x-2", 7).json() == {"accepted": 0, "duplicates": 1}
    flagged = send(ingest, "x-3", 4, properties={"meterline_reservation": True})
    after = consume(api, "s1", {"amount": 20, "event_id": "x-3"})
    assert after.status_code == (409 if flagged.status_code == 202 else 200), after.text
    with RunAggregator(api.env):
        rows = wait_counted(api, "s1", 3)
    values = {e: v for e, v, _ts in rows}
    expected = {"x-1": 2.0, "x-2": 3.0, "x-3": 4.0 if flagged.status_code == 202 else 20.0}
    assert values == expected


@pytest.mark.parametrize(
    ("customer", "body", "field"),
    [
        ("c1", {"amount": 1, "event_id": "a\x01b"}, "event_id"),
        ("c1", {"amount": 1, "event_id": "a\nb"}, "event_id"),
        ("c%01", {"amount": 1, "event_id": "ok-1"}, "customer"),
        ("c1", {"amount": "5", "event_id": "ok-2"}, "amount"),
        ("c1", {"amount": True, "event_id": "ok-3"}, "amount"),
        ("c1", {"amount": 1e16, "event_id": "ok-4"}, "amount"),
    ],
)
def test_consume_validates_as_ingest_does(
    api: Api, customer: str, body: dict[str, Any], field: str
) -> None:
    answer = consume(api, customer, body)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_concurrent_consumes_of_one_event_id_get_the_first_answer(api: Api) -> None:
    start = threading.Barrier(8)
    answers: list[tuple[int, dict[str, Any]]] = []

    def one(amount: int) -> None:
        with api.client("ingest") as http:
            start.wait()
            r = http.post(URL.format(c="k1"), json={"amount": amount, "event_id": "k1-a"})
            answers.append((r.status_code, r.json()))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 8 and all(a == answers[0] for a in answers)
    status, body = answers[0]
    assert status == 200
    won = body["used"]
    assert used(api, "k1") == won
    sent = read_topic(api.env["METERLINE_KAFKA_BOOTSTRAP"], topic(api), 1)
    assert {e.value for e in sent if e.id == "k1-a"} == {won}
    with RunAggregator(api.env):
        rows = wait_counted(api, "k1", 1)
    assert [v for _e, v, _t in rows] == [won]
    assert used(api, "k1") == won


def test_ingest_refuses_a_consume_id_after_a_redis_flush(api: Api, ingest: httpx.Client) -> None:
    """The dedupe store is derived state: after a flush, ingest asks Postgres whether a missed
    id is a consume's, so an event reusing it is a duplicate, not accepted and then dropped."""
    assert consume(api, "s1", {"amount": 3, "event_id": "y-1"}).status_code == 200
    redis.Redis.from_url(api.env["METERLINE_REDIS_URL"]).flushall()
    assert send(ingest, "y-1", 7).json() == {"accepted": 0, "duplicates": 1}
    assert send(ingest, "y-2", 5).json() == {"accepted": 1, "duplicates": 0}
    with RunAggregator(api.env):
        rows = wait_counted(api, "s1", 2)
    assert {e: v for e, v, _ts in rows} == {"y-1": 3.0, "y-2": 5.0}


def test_a_reservation_is_pruned_when_another_copy_of_its_id_was_counted(api: Api) -> None:
    """An event with the consume's id reached the ledger first (ingest accepted it just before
    the consume marked the id): the consume's own event is then a duplicate, and its pending
    reservation must still go, or it holds the customer's limit for ever."""
    first = UsageEvent(api.tenant_id, "r1-a", "r1", "api_calls", 7.0, int(time.time() * 1000), 0)
    publish(api.env["METERLINE_KAFKA_BOOTSTRAP"], topic(api), [first])
    assert consume(api, "r1", {"amount": 3, "event_id": "r1-a"}).status_code == 200
    with RunAggregator(api.env):
        rows = wait_counted(api, "r1", 1)
        assert [v for _e, v, _t in rows] == [7.0]
        deadline = time.monotonic() + 30
        while used(api, "r1") != 7 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert used(api, "r1") == 7
    view = RedisUsageView(redis_connect(api.env["METERLINE_REDIS_URL"]), "ml")
    assert view.held_ids(api.tenant_id, "r1", "api_calls") == set()


def test_a_batch_of_consumes_takes_two_redis_round_trips(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reservations' pipeline, whose scripts ask ingest's dedupe store each, then the mark
    of the stored grants: the dedupe check costs no round trip of its own."""
    with api.client("admin") as admin:
        admin.post("/v1/admin/customers", json={"id": "rt"}).raise_for_status()
        admin.put("/v1/admin/customers/rt/subscription", json={"plan": "basic"}).raise_for_status()
    service, tenant = api.deps.service, api.tenant_id
    asks = lambda tag: [ConsumeAsk(tenant, "rt", "api_calls", 1, f"{tag}{n}") for n in range(8)]  # noqa: E731
    assert [o[0] for o in service.consume_many(asks("warm")) if isinstance(o, tuple)] == [200] * 8
    sent: list[int] = []
    send = redis.connection.AbstractConnection.send_packed_command
    me = threading.get_ident()

    def counted(conn: Any, command: Any, check_health: bool = True) -> None:
        if threading.get_ident() == me:
            sent.append(1)
        send(conn, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    outcomes = service.consume_many(asks("rt"))
    assert [o[0] for o in outcomes if isinstance(o, tuple)] == [200] * 8
    assert len(sent) == 2
