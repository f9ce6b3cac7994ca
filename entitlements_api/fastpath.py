"""A lean path for the hot call, a plain check `GET /v1/customers/{c}/entitlements/{f}`.

Apps call this route far more often than any other, and most answers come from the decision
cache, so FastAPI's routing, parameter validation and response building would be most of the
cost. `CheckFastPath` wraps the whole FastAPI app (`app.create_server`) and answers a plain check
itself: no query string, path parameters within the route's bounds, a key with the `read`
scope, and a decision the service gives without raising. Anything else — another route, an
`amount`, bad input, a bad key, an unknown feature — goes to the FastAPI app unchanged, which
answers with the documented errors. So the answers are the FastAPI route's, byte for byte:
both call the same `Authenticator.principal` and `EntitlementService.check`. (The key's principal
is reused for PRINCIPAL_TTL seconds, `principals.RecentPrincipals`, and fetched in a worker
thread, so the Authenticator's Postgres read when its cache expires never stalls the loop.)

A cached decision is answered without yielding to the event loop, with its JSON body encoded
once: `EncodedDecisions` keeps the body beside the decision object it was made from and
re-encodes when the service hands out another object (a new decision after the TTL or a
change). A miss is decided in a worker thread, so its Redis round trip never stalls the loop;
concurrent misses of one (tenant, customer, feature) share that one decision.

Refresh-ahead: a decision checked at least once during its life is re-decided in the background
when it enters the last REFRESH_AHEAD of its TTL (a timer set by its first hit), and answered as
it is meanwhile (still within its TTL, so no staler than before); a key checked at any rate is
then never a miss on a caller's path, and is decided once per TTL. (Refreshing only on a hit
inside that last stretch missed about half the keys checked 8 times a second: they expired
unhit and their next check waited for Redis.) A key not checked during a decision's life is
left to expire. Timed refreshes due within REFRESH_BATCH seconds of each other are decided in
one worker-thread job, which keeps the event loop's share of a refresh small. A miss, a
background refresh and concurrent misses of one (tenant, customer, feature) share one decision
in flight.

`answer_now` is the same answer for a cached decision, without ASGI at all: the HTTP protocol
(`protocol.CheckProtocol`) calls it while parsing a request and writes the response itself.

Plain checks (`GET .../entitlements/{feature}` without `amount`) are answered by
`fastpath.CheckFastPath` before FastAPI: cached decisions with their JSON encoded once, misses
decided in a worker thread (concurrent misses of one key share one decision), and refresh-ahead:
a decision checked at least once during its life is re-decided in the background when it enters
the last tenth of its TTL (a timer set by its first hit; refreshes due together are decided in
one worker-thread job), and answered as it is meanwhile. So a key checked at any rate is never a
miss on a caller's path and is decided once per TTL; no answer is older than the TTL.
(Refreshing only on a hit in that last tenth left about half the keys of the benchmark, each
checked ~8 times a second, to expire unhit: ~300 misses a second through the ASGI path, each
waiting for Redis.) The key's principal is reused for 1 s (`principals.py`) and fetched in a
worker thread, so the Authenticator's Postgres read when its 30 s cache entry expires never
stalls the event loop (a revoked key is refused at most 1 s later than by the Authenticator
alone). Anything it does not answer with a 200 (errors, `amount`, other routes) goes to the
FastAPI app, so answers and the OpenAPI schema are the same either way;
`tests/entitlements/test_fastpath.py` compares the two for every reason and error.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from entitlements_api.decisions import MAX_FEATURE
from entitlements_api.principals import RecentPrincipals
from entitlements_api.schemas import MAX_CUSTOMER
from entitlements_api.wiring import Dependencies
from meterline.entitlements import Decision, Reason
from meterline.errors import MeterlineError
from meterline.inputs import has_control

JSON = b"application/json"
REFRESH_AHEAD = 0.1  # fraction of the decision TTL before expiry when a checked key refreshes
PRINCIPAL_TTL = 1.0  # seconds a key's principal is reused without asking the Authenticator
REFRESH_BATCH = 0.01  # seconds: timed refreshes due within this are decided in one job
Key = tuple[int, str, str]  # (tenant id, customer, feature)

log = logging.getLogger("entitlements_api")


class EncodedDecisions:
    """JSON bodies of decisions, keyed by (tenant, customer, feature), reused while the
    service returns the very same `Decision` object (decisions are frozen)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._bodies: dict[tuple[int, str, str], tuple[Decision, bytes]] = {}

    def body(self, tenant_id: int, customer: str, decision: Decision) -> bytes:
        key = (tenant_id, customer, decision.feature)
        hit = self._bodies.get(key)
        if hit is not None and hit[0] is decision:
            return hit[1]
        body = orjson.dumps(decision.as_dict())
        if len(self._bodies) >= self._max:
            self._bodies.clear()
        self._bodies[key] = (decision, body)
        return body


class CheckFastPath:
    """ASGI middleware in front of the whole app: answers plain checks itself (see the module
    docstring) and hands every other request, and every lifespan event, to `app`.

    It records the request metrics of what it answers, under the route template `route`, as
    the app's own measuring middleware does; an unexpected error is counted as a 500 and
    re-raised, so the server answers 500 and logs it, as for the app.
    """

    def __init__(self, app: ASGIApp, deps: Dependencies, route: str) -> None:
        self._app = app
        self._deps = deps
        self._ok = deps.metrics.requests.labels(route, "200")
        self._failed = deps.metrics.requests.labels(route, "500")
        self._latency = deps.metrics.latency.labels(route)
        self._by_reason: dict[Reason, Counter] = {}
        self._bodies = EncodedDecisions()
        self._principals = RecentPrincipals(deps.auth, PRINCIPAL_TTL)
        self._deciding: dict[Key, asyncio.Future[Decision]] = {}
        self._refresh_within = deps.service.options.decision_ttl * REFRESH_AHEAD
        self._watched: set[Key] = set()  # keys with a refresh timer set
        self._due: list[tuple[Key, asyncio.Future[Decision]]] = []  # timed, not yet started
        self._batches: set[asyncio.Task[None]] = set()  # referenced while they run

    def answer_now(self, path: str, authorization: str | None) -> bytes | None:
        """The 200 body of a plain GET of `path` (no query string) when its decision is cached
        and its key's principal recent, counted in the metrics; None when it is not a plain
        check or would need the Authenticator (a key not seen within PRINCIPAL_TTL), the
        service to decide (a miss) or the app to answer (an error). Never blocks, never raises
        a domain error."""
        found = check_path(path)
        if found is None:
            return None
        start = time.perf_counter()
        customer, feature = found
        who = self._principals.now(authorization)
        if who is None:
            return None
        decision = self._cached(who.tenant_id, customer, feature)
        if decision is None:
            return None
        self._count(decision.reason)
        body = self._bodies.body(who.tenant_id, customer, decision)
        self._ok.inc()
        self._latency.observe(time.perf_counter() - start)
        return body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = check_path(scope["path"]) if _plain_get(scope) else None
        if found is None:
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            body = await self._answer(scope, *found)
        except Exception:
            self._failed.inc()
            raise
        if body is None:
            await self._app(scope, receive, send)
            return
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", JSON)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self._ok.inc()
        self._latency.observe(time.perf_counter() - start)

    async def _answer(self, scope: Scope, customer: str, feature: str) -> bytes | None:
        """The 200 body of a plain check, or None to let the app answer (with its error)."""
        try:
            header = _authorization(scope)
            who = self._principals.now(header) or await self._principals.fetch(header)
            decision = await self._decide(who.tenant_id, customer, feature)
        except MeterlineError:
            return None  # the app raises the same error and maps it to its status
        self._count(decision.reason)
        return self._bodies.body(who.tenant_id, customer, decision)

    def _count(self, reason: Reason) -> None:
        """`metrics.decisions.labels(reason).inc()`, with the labelled child looked up once."""
        child = self._by_reason.get(reason)
        if child is None:
            child = self._by_reason[reason] = self._deps.metrics.decisions.labels(reason.value)
        child.inc()

    async def _decide(self, tenant_id: int, customer: str, feature: str) -> Decision:
        """A cached decision at once; else the service decides in a worker thread, so the
        usage read (a Redis round trip, or Postgres) never stalls the event loop. Checks of the
        same key that arrive while it decides wait for that decision instead of deciding again
        (they would get the cached one a moment later anyway); its error is theirs too."""
        found = self._cached(tenant_id, customer, feature)
        if found is not None:
            return found
        return await asyncio.shield(self._deciding_now((tenant_id, customer, feature)))

    def _cached(self, tenant_id: int, customer: str, feature: str) -> Decision | None:
        """The cached decision; the first hit of a decision sets its refresh-ahead timer (or,
        when it is already about to expire, refreshes it now). Called on the event loop."""
        found = self._deps.service.cached_decision(tenant_id, customer, feature)
        if found is None:
            return None
        decision, left = found
        key = (tenant_id, customer, feature)
        if key not in self._watched and key not in self._deciding:
            self._watched.add(key)
            later = left - self._refresh_within
            if later > 0:
                asyncio.get_running_loop().call_later(later, self._refresh_due, key)
            else:
                self._refresh_due(key)
        return decision

    def deciding(self) -> int:
        """How many decisions are in flight (misses and background refreshes)."""
        return len(self._deciding)

    def _deciding_now(self, key: Key) -> asyncio.Future[Decision]:
        """The decision of `key` in flight in a worker thread, started unless it already is."""
        pending = self._deciding.get(key)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(self._deps.service.refresh, *key))
            self._deciding[key] = pending
            pending.add_done_callback(lambda f: self._decided(key, f))
        return pending

    def _refresh_due(self, key: Key) -> None:
        """Re-decide `key` in the background: with the others due within REFRESH_BATCH, in
        one worker-thread job (unless it is being decided already)."""
        self._watched.discard(key)
        if key in self._deciding:
            return
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[Decision] = loop.create_future()
        self._deciding[key] = pending
        pending.add_done_callback(lambda f: self._decided(key, f))
        if not self._due:
            loop.call_later(REFRESH_BATCH, self._start_batch)
        self._due.append((key, pending))

    def _start_batch(self) -> None:
        task = asyncio.ensure_future(self._refresh_batch())
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _refresh_batch(self) -> None:
        batch, self._due = self._due, []
        outcomes = await asyncio.to_thread(self._refresh_all, [key for key, _ in batch])
        for (_, pending), outcome in zip(batch, outcomes, strict=True):
            if pending.done():
                continue
            if isinstance(outcome, Decision):
                pending.set_result(outcome)
            else:
                pending.set_exception(outcome)

    def _refresh_all(self, keys: list[Key]) -> list[Decision | Exception]:
        """`service.refresh` of each key in turn (in a worker thread); an error is returned."""
        outcomes: list[Decision | Exception] = []
        for key in keys:
            try:
                outcomes.append(self._deps.service.refresh(*key))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _decided(self, key: Key, decided: asyncio.Future[Decision]) -> None:
        self._deciding.pop(key, None)
        if decided.cancelled():
            return
        error = decided.exception()  # retrieved here too, for a refresh nobody waits for
        if error is not None and not isinstance(error, MeterlineError):
            log.warning("deciding a check failed", extra={"error": repr(error)[:200]})


def _plain_get(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]


def check_path(path: str) -> tuple[str, str] | None:
    """(customer, feature) of `/v1/customers/{customer}/entitlements/{feature}` when both are
    within the route's length bounds and the customer holds no control character, else None
    (the app then answers, with its 422). `path` is the decoded ASGI path."""
    parts = path.split("/")
    if len(parts) != 6 or parts[0] or parts[1:3] != ["v1", "customers"]:
        return None
    if parts[4] != "entitlements":
        return None
    customer, feature = parts[3], parts[5]
    if not (0 < len(customer) <= MAX_CUSTOMER and 0 < len(feature) <= MAX_FEATURE):
        return None
    if has_control(customer):
        return None
    return customer, feature


def _authorization(scope: Scope) -> str | None:
    """The first Authorization header, as Starlette's `request.headers.get` reads it."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"authorization":
            return value.decode("latin-1")
    return None
