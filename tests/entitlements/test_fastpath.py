"""The lean path for plain checks: the served app (`create_server`) answers exactly as the
FastAPI app alone (`create_app`), for every reason code and every error, with in-memory parts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from entitlements_api import fastpath
from entitlements_api.app import create_app, create_server
from entitlements_api.fastpath import CheckFastPath, EncodedDecisions, check_path
from entitlements_api.wiring import Dependencies
from meterline.auth import Authenticator
from meterline.catalog import MemoryCatalogRepository
from meterline.clock import FakeClock
from meterline.entitlements import (
    Decision,
    EntitlementService,
    MemoryAnswerStore,
    MemoryCustomerRepository,
    MemoryGrantRepository,
    MemorySubscriptionRepository,
    NewGrant,
    ServiceOptions,
    Subscription,
    ViewUsage,
)
from meterline.events import UsageEvent
from meterline.stripe import (
    MemoryStripeObjectRepository,
    MemoryWebhookEventStore,
    SubscriptionSync,
)
from meterline.tenants import MemoryTenantRepository
from meterline.view import MemoryUsageView
from tests.entitlements.catalogs import small_catalog

NOW = datetime(2026, 11, 18, 12, tzinfo=UTC)
ROUTE = "/v1/customers/{customer}/entitlements/{feature}"


class Publisher:
    def publish(self, events: list[UsageEvent], timeout: float = 10.0) -> None:
        pass


@dataclass
class World:
    deps: Dependencies
    subs: MemorySubscriptionRepository
    grants: MemoryGrantRepository
    customers: MemoryCustomerRepository
    keys: dict[str, str]

    @property
    def service(self) -> EntitlementService:
        return self.deps.service


def world(decision_ttl: float) -> World:
    clock = FakeClock(NOW)
    catalogs = MemoryCatalogRepository()
    catalogs.apply(1, small_catalog())
    customers, subs = MemoryCustomerRepository(), MemorySubscriptionRepository()
    grants = MemoryGrantRepository(customers)
    view = MemoryUsageView(clock)
    options = ServiceOptions(decision_ttl=decision_ttl)
    service = EntitlementService(
        catalogs,
        subs,
        grants,
        ViewUsage(view),
        view,
        Publisher(),
        MemoryAnswerStore(),
        clock,
        options,
    )
    tenants = MemoryTenantRepository()
    tenants.create_tenant("acme")
    keys = {s: tenants.create_key("acme", [s])[1] for s in ("read", "ingest")}
    objects = MemoryStripeObjectRepository()
    sync = SubscriptionSync(None, customers, subs, objects, MemoryWebhookEventStore())  # type: ignore[arg-type]
    deps = Dependencies(
        service, catalogs, customers, subs, grants, tenants, Authenticator(tenants, clock=clock),
        None, objects, sync, None, "whsec_test", clock=clock,
    )  # fmt: skip
    return World(deps, subs, grants, customers, keys)


@pytest.fixture
def w() -> World:
    """Decisions are not cached, so both apps decide afresh (at the same fake time)."""
    return world(0.0)


@contextmanager
def clients(w: World, scope: str = "read") -> Iterator[tuple[TestClient, TestClient]]:
    """(served app, FastAPI app alone) over the same dependencies, with the key of `scope`."""
    headers = {"Authorization": f"Bearer {w.keys[scope]}"}
    served = TestClient(create_server(w.deps), headers=headers, raise_server_exceptions=False)
    plain = TestClient(create_app(w.deps), headers=headers, raise_server_exceptions=False)
    with served, plain:
        yield served, plain


def same_answer(w: World, path: str, scope: str = "read", **headers: str) -> dict[str, Any]:
    """Asks both apps; asserts status, content type and body bytes are identical."""
    with clients(w, scope) as (served, plain):
        fast, slow = served.get(path, headers=headers), plain.get(path, headers=headers)
    assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
    assert fast.headers["content-type"] == slow.headers["content-type"]
    assert fast.headers["content-length"] == slow.headers["content-length"]
    body: dict[str, Any] = fast.json()
    return body


def test_check_path_takes_only_the_check_route_within_bounds() -> None:
    assert check_path("/v1/customers/c1/entitlements/api_calls") == ("c1", "api_calls")
    assert check_path("/v1/customers/a b/entitlements/x") == ("a b", "x")
    assert check_path("/v1/customers/" + "c" * 128 + "/entitlements/" + "f" * 64) is not None
    for path in (
        "/v1/customers/c1/entitlements",
        "/v1/customers/c1/entitlements/",
        "/v1/customers/c1/entitlements/api_calls/",
        "/v1/customers/c1/entitlements/api_calls/consume",
        "/v1/customers//entitlements/api_calls",
        "/v2/customers/c1/entitlements/api_calls",
        "/v1/customers/c1/grants/api_calls",
        "v1/customers/c1/entitlements/api_calls",
        "/v1/customers/" + "c" * 129 + "/entitlements/api_calls",
        "/v1/customers/c1/entitlements/" + "f" * 65,
        "/healthz",
    ):
        assert check_path(path) is None, path


def test_every_reason_is_answered_as_the_route_answers(w: World) -> None:
    """within_limit, limit_exceeded, overage_allowed, unlimited, included (boolean, static),
    not_in_plan, no_subscription, payment_grace and subscription_inactive."""
    w.subs.put(Subscription(1, "basic", "basic"))
    w.subs.put(Subscription(1, "power", "power", current_period_start=NOW - timedelta(days=3),
                            current_period_end=NOW + timedelta(days=27)))  # fmt: skip
    w.subs.put(Subscription(1, "open", "unlimited"))
    w.subs.put(Subscription(1, "grace", "power", "past_due", past_due_since=NOW - timedelta(1)))
    w.subs.put(Subscription(1, "gone", "power", "canceled"))
    assert w.service.consume(1, "full", "api_calls", 50, "e1")[0] == 200
    assert w.service.consume(1, "power", "api_calls", 100_001, "e2")[0] == 200
    cases = {
        ("c1", "api_calls"): "within_limit",
        ("full", "api_calls"): "limit_exceeded",
        ("power", "api_calls"): "overage_allowed",
        ("open", "api_calls"): "unlimited",
        ("power", "export"): "included",
        ("basic", "support"): "included",
        ("basic", "export"): "not_in_plan",
        ("c1", "export"): "no_subscription",
        ("grace", "export"): "payment_grace",
        ("gone", "export"): "subscription_inactive",
    }
    for (customer, feature), reason in cases.items():
        body = same_answer(w, f"/v1/customers/{customer}/entitlements/{feature}")
        assert body["reason"] == reason, (customer, feature)
    assert same_answer(w, "/v1/customers/basic/entitlements/support")["value"] == "email"
    assert "grace_ends" in same_answer(w, "/v1/customers/grace/entitlements/export")


def test_grants_and_odd_customer_ids_answer_alike(w: World) -> None:
    w.customers.create(1, "c/2", None, None)
    w.customers.create(1, "c1", None, None)
    since = NOW - timedelta(days=1)
    w.grants.add(1, NewGrant("c1", "api_calls", "top_up", 25, since))
    w.grants.add(1, NewGrant("c1", "sso", "override", None, since))
    assert same_answer(w, "/v1/customers/c1/entitlements/api_calls")["limit"] == 75
    assert same_answer(w, "/v1/customers/c1/entitlements/sso")["reason"] == "included"
    assert same_answer(w, "/v1/customers/caf%C3%A9%20x/entitlements/api_calls")["plan"] == "free"


def test_errors_and_amounts_are_left_to_the_route(w: World) -> None:
    assert same_answer(w, "/v1/customers/c1/entitlements/nope")["error"] == "not_found"
    assert same_answer(w, "/v1/customers/c1/entitlements/api_calls", "ingest")["error"] == (
        "forbidden"
    )
    bad_key = {"Authorization": "Bearer nope"}
    assert same_answer(w, "/v1/customers/c1/entitlements/api_calls", **bad_key)["error"] == (
        "unauthorized"
    )
    long = "/v1/customers/" + "c" * 129 + "/entitlements/api_calls"
    assert same_answer(w, long)["error"] == "validation_failed"
    assert same_answer(w, "/v1/customers/c1/entitlements/api_calls?amount=60")["reason"] == (
        "limit_exceeded"
    )
    assert same_answer(w, "/v1/customers/c1/entitlements/api_calls?amount=-1")["errors"]
    with clients(w) as (served, _plain):
        assert served.get("/v1/customers/c1/entitlements/api_calls", headers={}).status_code == 200
        served.headers.pop("Authorization")
        assert served.get("/v1/customers/c1/entitlements/api_calls").status_code == 401
        assert served.get("/healthz").json() == {"status": "ok"}
        assert (
            "/v1/customers/{customer}/entitlements/{feature}"
            in served.get("/openapi.json").json()["paths"]
        )


def test_fast_answers_are_measured_under_the_route_template(w: World) -> None:
    with clients(w) as (served, plain):
        served.get("/v1/customers/c1/entitlements/api_calls").raise_for_status()
        plain.get("/v1/customers/c1/entitlements/api_calls").raise_for_status()
    registry = w.deps.metrics.registry
    count = registry.get_sample_value
    routes = {
        s.labels["route"]
        for m in registry.collect()
        if m.name == "meterline_entitlements_requests"
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert len(routes) == 1
    (route,) = routes
    assert route == ROUTE
    requests = "meterline_entitlements_requests_total"
    assert count(requests, {"route": route, "status": "200"}) == 2
    assert count("meterline_entitlements_request_seconds_count", {"route": route}) == 2
    assert count("meterline_entitlements_decisions_total", {"reason": "within_limit"}) == 2


def test_an_unexpected_error_is_a_counted_500(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("redis is down")

    monkeypatch.setattr(w.service, "check", broken)
    monkeypatch.setattr(w.service, "refresh", broken)
    with clients(w) as (served, _plain):
        answer = served.get("/v1/customers/c1/entitlements/api_calls")
    assert answer.status_code == 500
    failed = {"route": ROUTE, "status": "500"}
    assert (
        w.deps.metrics.registry.get_sample_value("meterline_entitlements_requests_total", failed)
        == 1
    )


def test_cached_decisions_are_answered_and_encoded_once() -> None:
    w = world(60.0)
    path = "/v1/customers/c1/entitlements/api_calls"
    with clients(w) as (served, _plain):
        first = served.get(path).json()
        assert w.service.cached_check(1, "c1", "api_calls") is not None
        assert w.service.consume(1, "c1", "api_calls", 7, "e1")[0] == 200  # invalidates
        assert w.service.cached_check(1, "c1", "api_calls") is None
        second = served.get(path).json()
        assert served.get(path).json() == second
    assert (first["used"], second["used"]) == (0, 7)


def test_encoded_bodies_follow_the_decision_object(w: World) -> None:
    bodies = EncodedDecisions(max_entries=2)
    one = w.service.check(1, "c1", "api_calls")
    body = bodies.body(1, "c1", one)
    assert bodies.body(1, "c1", one) is body
    assert orjson.loads(body) == one.as_dict()
    again = w.service.check(1, "c1", "api_calls")  # a new, equal object: re-encoded
    assert again is not one and bodies.body(1, "c1", again) == body
    for n in range(3):
        bodies.body(1, f"c{n + 2}", one)
    assert bodies.body(1, "c1", one) == body


def test_plain_checks_never_reach_the_app(w: World) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError(f"the app was asked for {scope['path']}")

    headers = {"Authorization": f"Bearer {w.keys['read']}"}
    served = TestClient(CheckFastPath(app, w.deps, ROUTE), headers=headers)  # no lifespan
    for feature in ("api_calls", "export", "support"):
        assert served.get(f"/v1/customers/c1/entitlements/{feature}").status_code == 200
    with pytest.raises(AssertionError):
        served.get("/v1/customers/c1/entitlements/api_calls?amount=1")


async def ask(fast: CheckFastPath, w: World, customer: str = "c1") -> bytes:
    """One plain check through the ASGI path of `fast`: its body (200 expected)."""
    scope = {
        "type": "http", "method": "GET", "query_string": b"",
        "path": f"/v1/customers/{customer}/entitlements/api_calls",
        "headers": [(b"authorization", f"Bearer {w.keys['read']}".encode())],
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await fast(scope, receive, send)
    assert sent[0]["status"] == 200
    return bytes(sent[1]["body"])


def counting_refresh(w: World, monkeypatch: pytest.MonkeyPatch, pause: float) -> list[str]:
    """Make `service.refresh` take `pause` seconds and record the customers it decides."""
    calls: list[str] = []
    real = w.service.refresh

    def slow(tenant_id: int, customer: str, feature: str) -> Decision:
        calls.append(customer)
        time.sleep(pause)
        return real(tenant_id, customer, feature)

    monkeypatch.setattr(w.service, "refresh", slow)
    return calls


def test_concurrent_misses_of_a_key_share_one_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    w = world(60.0)
    calls = counting_refresh(w, monkeypatch, 0.2)
    fast = CheckFastPath(create_app(w.deps), w.deps, ROUTE)

    async def burst() -> list[bytes]:
        return await asyncio.gather(*(ask(fast, w) for _ in range(10)), ask(fast, w, "c2"))

    bodies = asyncio.run(burst())
    assert sorted(calls) == ["c1", "c2"]
    assert len(set(bodies[:10])) == 1 and orjson.loads(bodies[0])["reason"] == "within_limit"


def test_a_decision_about_to_expire_is_answered_and_refreshed_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = world(60.0)
    monkeypatch.setattr(fastpath, "REFRESH_AHEAD", 1.0)  # every hit is "about to expire"
    fast = CheckFastPath(create_app(w.deps), w.deps, ROUTE)

    async def scenario() -> tuple[bytes, bytes, list[str]]:
        first = await ask(fast, w)  # a miss
        before = w.service.cached_check(1, "c1", "api_calls")
        calls = counting_refresh(w, monkeypatch, 0.1)
        hit = await ask(fast, w)  # answered from the cache, without waiting for the refresh
        assert fast.deciding() == 1
        while fast.deciding():
            await asyncio.sleep(0.01)
        assert w.service.cached_check(1, "c1", "api_calls") is not before  # decided anew
        return first, hit, calls

    first, hit, calls = asyncio.run(scenario())
    assert hit == first and calls == ["c1"]
    refreshed = w.service.cached_decision(1, "c1", "api_calls")
    assert refreshed is not None and refreshed[1] > 60 * 0.8 - 1


def test_without_refresh_ahead_a_hit_never_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    w = world(60.0)
    fast = CheckFastPath(create_app(w.deps), w.deps, ROUTE)

    async def scenario() -> list[str]:
        await ask(fast, w)
        calls = counting_refresh(w, monkeypatch, 0.0)
        for _ in range(3):
            await ask(fast, w)
        return calls

    assert asyncio.run(scenario()) == []


def batch_sizes(fast: CheckFastPath, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many keys each timed refresh job decides."""
    sizes: list[int] = []
    real = fast._refresh_all

    def counted(keys: list[tuple[int, str, str]]) -> list[Decision | Exception]:
        sizes.append(len(keys))
        return real(keys)

    monkeypatch.setattr(fast, "_refresh_all", counted)
    return sizes


async def until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def test_a_decision_checked_once_is_refreshed_before_expiry_without_another_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = world(1.0)
    monkeypatch.setattr(fastpath, "REFRESH_AHEAD", 0.5)
    fast = CheckFastPath(create_app(w.deps), w.deps, ROUTE)

    async def scenario() -> list[str]:
        await ask(fast, w)  # a miss: decided and cached
        first = w.service.cached_check(1, "c1", "api_calls")
        calls = counting_refresh(w, monkeypatch, 0.0)
        await ask(fast, w)  # one hit sets the refresh timer; nothing else checks c1
        await until(lambda: bool(calls) and not fast.deciding())
        refreshed = w.service.cached_check(1, "c1", "api_calls")
        assert refreshed is not None and refreshed is not first
        await asyncio.sleep(1.2)  # the refreshed decision is never checked: it just expires
        assert w.service.cached_check(1, "c1", "api_calls") is None
        return calls

    assert asyncio.run(scenario()) == ["c1"]


def test_refreshes_due_together_are_decided_in_one_job(monkeypatch: pytest.MonkeyPatch) -> None:
    w = world(60.0)
    monkeypatch.setattr(fastpath, "REFRESH_AHEAD", 1.0)  # every hit is "about to expire"
    fast = CheckFastPath(create_app(w.deps), w.deps, ROUTE)
    customers = ["c1", "c2", "c3"]

    async def scenario() -> tuple[list[int], list[str]]:
        for c in customers:
            await ask(fast, w, c)  # misses, decided one by one
        sizes = batch_sizes(fast, monkeypatch)
        calls = counting_refresh(w, monkeypatch, 0.0)
        for c in customers:
            await ask(fast, w, c)  # hits, all due for a refresh at once
        await until(lambda: not fast.deciding())
        return sizes, calls

    sizes, calls = asyncio.run(scenario())
    assert sizes == [3] and sorted(calls) == customers


def test_a_failed_timed_refresh_spoils_neither_the_batch_nor_the_next_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = world(60.0)
    monkeypatch.setattr(fastpath, "REFRESH_AHEAD", 1.0)
    fast = CheckFastPath(create_app(w.deps), w.deps, ROUTE)

    async def scenario() -> tuple[bytes, bytes]:
        before = await ask(fast, w, "c1"), await ask(fast, w, "c2")
        real = w.service.refresh

        def flaky(tenant_id: int, customer: str, feature: str) -> Decision:
            if customer == "c1":
                raise RuntimeError("redis went away")
            return real(tenant_id, customer, feature)

        monkeypatch.setattr(w.service, "refresh", flaky)
        c2 = w.service.cached_check(1, "c2", "api_calls")
        await ask(fast, w, "c1"), await ask(fast, w, "c2")
        await until(lambda: not fast.deciding())
        assert w.service.cached_check(1, "c2", "api_calls") is not c2  # refreshed all the same
        monkeypatch.setattr(w.service, "refresh", real)
        return before[0], await ask(fast, w, "c1")  # still answered from its live decision

    before, after = asyncio.run(scenario())
    assert after == before
