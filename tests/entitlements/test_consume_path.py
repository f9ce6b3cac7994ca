"""The lean path for consumes: the served app (`create_server`) answers every consume exactly as
the FastAPI app alone (`create_app`) answers it, byte for byte, with in-memory parts.

Each request is sent to two fresh worlds at the same fake time, one served, one plain, so that
both decide it from the same state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.responses import Response
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from entitlements_api.app import create_app, create_server
from entitlements_api.consume_path import ConsumeFastPath, consume_path
from meterline.errors import Unavailable
from meterline.events import UsageEvent
from tests.entitlements.test_fastpath import World, world

CONSUME = "/v1/customers/{customer}/entitlements/{feature}/consume"


@dataclass
class Pair:
    fast: World
    served: TestClient
    slow: World
    plain: TestClient

    def same(self, path: str, body: bytes, scope: str, **headers: str) -> tuple[int, Any]:
        """POSTs to both (each with its world's key of `scope`); asserts status, the headers
        that matter and the body bytes are identical."""
        answers = []
        for w, client in ((self.fast, self.served), (self.slow, self.plain)):
            key = w.keys.get(scope, "mlk_unknown")
            sent = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
            answers.append(client.post(path, content=body, headers={**sent, **headers}))
        fast, slow = answers
        assert (fast.status_code, fast.content) == (slow.status_code, slow.content), path
        for name in ("content-type", "content-length", "retry-after"):
            assert fast.headers.get(name) == slow.headers.get(name)
        return fast.status_code, fast.json()


@contextmanager
def pair() -> Iterator[Pair]:
    fast_world, plain_world = world(0.0), world(0.0)
    served = TestClient(create_server(fast_world.deps), raise_server_exceptions=False)
    plain = TestClient(create_app(plain_world.deps), raise_server_exceptions=False)
    with served, plain:
        yield Pair(fast_world, served, plain_world, plain)


TEXT = {"content-type": "text/plain"}
UTF8 = {"content-type": "application/json; charset=utf-8"}
CASES: list[tuple[str, bytes, str, dict[str, str], int]] = [
    ("c1/entitlements/api_calls", b'{"amount": 5, "event_id": "e1"}', "ingest", {}, 200),
    ("c1/entitlements/api_calls", b'{"amount": 7, "event_id": "e1"}', "ingest", {}, 200),
    ("c1/entitlements/api_calls", b'{"event_id": "e2"}', "ingest", {}, 200),
    ("c1/entitlements/api_calls", b'{"amount": 45, "event_id": "e3"}', "ingest", {}, 403),
    ("c1/entitlements/api_calls", b'{"amount": "5", "event_id": "e4"}', "ingest", {}, 422),
    ("c1/entitlements/api_calls", b'{"amount": true, "event_id": "e5"}', "ingest", {}, 422),
    ("c1/entitlements/api_calls", b'{"amount": 1e300, "event_id": "e6"}', "ingest", {}, 422),
    ("c1/entitlements/api_calls", b'{"amount": 1, "event_id": "a\\u0001"}', "ingest", {}, 422),
    ("c1/entitlements/api_calls", b'{"amount": 1, "event_id": 7}', "ingest", {}, 422),
    ("c1/entitlements/api_calls", b'{"amount": 1}', "ingest", {}, 422),
    ("c1/entitlements/api_calls", b'{"amount": 1, "event_id": "x", "y": 1}', "ingest", {}, 422),
    ("c1/entitlements/api_calls", b'{"amount": NaN, "event_id": "e7"}', "ingest", {}, 422),
    ("c1/entitlements/api_calls", b'{"amount": 1, "event_id": "e8"', "ingest", {}, 422),
    ("c1/entitlements/api_calls", b"[1]", "ingest", {}, 422),
    ("c1/entitlements/api_calls", b'{"event_id": "e9"}', "read", {}, 403),
    ("c1/entitlements/api_calls", b'{"event_id": "e9"}', "nobody", {}, 401),
    ("c1/entitlements/nope", b'{"event_id": "e10"}', "ingest", {}, 404),
    ("c1/entitlements/export", b'{"event_id": "e11"}', "ingest", {}, 422),
    ("c1/entitlements/" + "f" * 65, b'{"event_id": "e12"}', "ingest", {}, 422),
    ("c%01/entitlements/api_calls", b'{"event_id": "e13"}', "ingest", {}, 422),
    ("c1/entitlements/api_calls?x=1", b'{"event_id": "e14"}', "ingest", {}, 200),
    ("c1/entitlements/api_calls", b'{"event_id": "e15"}', "ingest", TEXT, 422),
    ("c2/entitlements/api_calls", b'{"amount": 1, "event_id": "e16"}', "ingest", UTF8, 200),
]  # fmt: skip


def test_every_consume_is_answered_as_the_route_answers_it() -> None:
    with pair() as p:
        for path, body, scope, headers, status in CASES:
            base, _, query = path.partition("?")
            url = f"/v1/customers/{base}/consume" + (f"?{query}" if query else "")
            assert p.same(url, body, scope, **headers)[0] == status, (path, body)


def test_ids_ingest_holds_and_unacknowledged_grants_answer_as_the_route() -> None:
    with pair() as p:
        path = "/v1/customers/c1/entitlements/api_calls/consume"
        for w in (p.fast, p.slow):
            w.service.ingested.mark(1, "taken")
            w.service._publisher = Failing()  # type: ignore[attr-defined]
        status, body = p.same(path, b'{"event_id": "taken"}', "ingest")
        assert (status, body["error"]) == (409, "conflict")
        status, body = p.same(path, b'{"amount": 3, "event_id": "lost"}', "ingest")
        assert (status, body["message"]) == (503, "the broker did not acknowledge in time")


class Failing:
    def publish(self, events: list[UsageEvent], timeout: float = 10.0) -> None:
        raise Unavailable("the broker did not acknowledge in time", 2)


def test_fast_consumes_are_measured_under_the_route_template() -> None:
    with pair() as p:
        headers = {"Authorization": f"Bearer {p.fast.keys['ingest']}"}
        path = "/v1/customers/c1/entitlements/api_calls/consume"
        assert p.served.post(path, json={"event_id": "m1"}, headers=headers).status_code == 200
        refused = p.served.post(path, json={"event_id": "m2", "amount": 99}, headers=headers)
        assert refused.status_code == 403
    count = p.fast.deps.metrics.registry.get_sample_value
    route = "/v1/customers/{customer}/entitlements/{feature}/consume"
    assert count("meterline_entitlements_requests_total", {"route": route, "status": "200"}) == 1
    assert count("meterline_entitlements_requests_total", {"route": route, "status": "403"}) == 1
    assert count("meterline_entitlements_consumes_total", {"outcome": "granted"}) == 1


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("/v1/customers/c1/entitlements/api_calls/consume", ("c1", "api_calls")),
        ("/v1/customers/c1/entitlements/api_calls", None),
        ("/v1/customers/c1/entitlements/api_calls/consume/", None),
        ("/v1/customers//entitlements/api_calls/consume", None),
        ("/v1/customers/c\x01/entitlements/api_calls/consume", None),
    ],
)
def test_consume_path_takes_only_the_consume_route_within_bounds(
    path: str, found: tuple[str, str] | None
) -> None:
    assert consume_path(path) == found


def test_a_well_formed_consume_never_reaches_the_app_and_anything_else_does() -> None:
    w, seen = world(0.0), []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()  # the body, replayed
        seen.append((scope["path"], message["body"]))
        await Response(status_code=418)(scope, receive, send)

    client = TestClient(ConsumeFastPath(app, w.deps, CONSUME))
    headers = {"Authorization": f"Bearer {w.keys['ingest']}"}
    path = "/v1/customers/c1/entitlements/api_calls/consume"
    assert client.post(path, json={"event_id": "n1"}, headers=headers).status_code == 200
    assert client.post(path, json={"event_id": "n2", "x": 1}, headers=headers).status_code == 418
    assert client.post(path, json={"event_id": "n3"}).status_code == 418
    assert seen == [(path, b'{"event_id":"n2","x":1}'), (path, b'{"event_id":"n3"}')]
