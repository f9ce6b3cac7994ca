"""Both entitlement clients against a scripted service (httpx mock transports) and against an
unreachable one: the cache, stale answers, fail-open/fail-closed, consume and refusals."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest

from meterline_sdk import AsyncEntitlements, Entitlement, Entitlements, EntitlementsError
from meterline_sdk.entitlements import UNAVAILABLE

Handler = Callable[[httpx.Request], httpx.Response]
GRANTED = {"feature": "export", "has_access": True, "reason": "included", "plan": "pro"}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Service:
    """Answers each request with the next scripted response; records the requests."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer k"
        self.requests.append(request)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def down() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class Both:
    """Runs one scenario on the blocking and on the asyncio client, with the same calls."""

    def __init__(self, kind: str, url: str, handler: Handler | None, **kw: object) -> None:
        self.kind = kind
        if kind == "sync":
            transport = httpx.MockTransport(handler) if handler else None
            self.sync = Entitlements(url, "k", transport=transport, **kw)  # type: ignore[arg-type]
        else:
            transport_a = httpx.MockTransport(handler) if handler else None
            self.aio = AsyncEntitlements(url, "k", transport=transport_a, **kw)  # type: ignore[arg-type]

    def check(self, customer: str, feature: str) -> Entitlement:
        if self.kind == "sync":
            return self.sync.check(customer, feature)
        return asyncio.run(self.aio.check(customer, feature))

    def consume(self, customer: str, feature: str, amount: float, event_id: str) -> Entitlement:
        if self.kind == "sync":
            return self.sync.consume(customer, feature, amount, event_id)
        return asyncio.run(self.aio.consume(customer, feature, amount, event_id))

    def cached(self, customer: str, feature: str) -> Entitlement | None:
        client = self.sync if self.kind == "sync" else self.aio
        return client.cached(customer, feature)


KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


@KINDS
def test_unreachable_service_fails_closed_unless_the_feature_fails_open(kind: str) -> None:
    client = Both(kind, down(), None, fail_open=["search"], timeout=0.5)
    closed = client.check("c1", "export")
    assert (closed.has_access, closed.reason, closed.fallback) == (False, UNAVAILABLE, True)
    assert client.check("c1", "search").has_access is True
    assert client.consume("c1", "export", 1, "e1").has_access is False
    assert client.consume("c1", "search", 1, "e2").has_access is True


@KINDS
def test_answers_are_cached_for_the_ttl_then_a_stale_answer_beats_the_fail_mode(
    kind: str,
) -> None:
    service = Service(httpx.Response(200, json=GRANTED), httpx.Response(503))
    clock = Clock()
    client = Both(kind, "http://x/", service, ttl=5, clock=clock)
    first = client.check("c1", "export")
    assert (first.has_access, first.plan, first.raw) == (True, "pro", GRANTED)
    assert client.check("c1", "export") == first and len(service.requests) == 1
    assert service.requests[0].url.path == "/v1/customers/c1/entitlements/export"
    clock.t = 10
    assert client.cached("c1", "export") is None
    stale = client.check("c1", "export")
    assert (stale.has_access, stale.stale, stale.fallback, len(service.requests)) == (
        True,
        True,
        False,
        2,
    )


@KINDS
def test_consume_posts_the_amount_and_forgets_the_customers_cached_answers(kind: str) -> None:
    refused = {"feature": "export", "has_access": False, "reason": "limit_exceeded"}
    service = Service(httpx.Response(200, json=GRANTED), httpx.Response(403, json=refused))
    client = Both(kind, "http://x", service)
    client.check("c1", "export")
    answer = client.consume("c1", "export", 2.5, "e1")
    assert (answer.has_access, answer.reason) == (False, "limit_exceeded")
    sent = service.requests[-1]
    assert sent.method == "POST" and sent.url.path.endswith("/export/consume")
    assert httpx.Response(200, content=sent.content).json() == {"amount": 2.5, "event_id": "e1"}
    assert client.cached("c1", "export") is None


@KINDS
@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_refusals_of_the_request_itself_raise(kind: str, status: int) -> None:
    problem = {"error": "nope", "message": "refused"}
    client = Both(kind, "http://x", Service(httpx.Response(status, json=problem)))
    with pytest.raises(EntitlementsError) as err:
        client.check("c1", "export")
    assert (err.value.status, err.value.body) == (status, problem)
    with pytest.raises(EntitlementsError):
        client.consume("c1", "export", 1, "e1")


def test_a_non_json_error_body_is_kept_as_text() -> None:
    client = Entitlements(
        "http://x",
        "k",
        transport=httpx.MockTransport(Service(httpx.Response(400, text="bad gateway config"))),
    )
    with pytest.raises(EntitlementsError) as err:
        client.consume("c1", "export", 1, "e1")
    assert err.value.body == "bad gateway config"


@KINDS
def test_quantities_are_read_exactly_past_15_digits(kind: str) -> None:
    body = (
        b'{"feature": "calls", "has_access": true, "reason": "within_limit", '
        b'"limit": 10000000000000005, "used": 10000000000000003.5, "remaining": 1.5}'
    )
    service = Service(httpx.Response(200, content=body))
    found = Both(kind, "http://x/", service).check("c1", "calls")
    assert found.used == Decimal("10000000000000003.5")
    assert (found.limit, found.remaining) == (Decimal(10000000000000005), Decimal("1.5"))
