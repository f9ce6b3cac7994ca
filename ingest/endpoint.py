"""POST /v1/events: the request's journey (`accept`), and a bare ASGI handler that serves it.

Per request, FastAPI's layers (routing, the Request object, dependency solving, its exception
middlewares) cost more CPU than ingest's own work on a single event (DESIGN.md: FastAPI costs
~3.5x raw ASGI). So `EventsEndpoint` wraps the whole FastAPI app (`app.create_server`) and
answers POST /v1/events itself; other paths and methods, and lifespan events, go on to the app.
The route stays declared in FastAPI, which documents it in the OpenAPI schema and answers
identically through the same `accept` and the same error mapping (`error_answer`). As served,
`protocol.EventsProtocol` goes one layer lower still: it calls `EventsEndpoint.answer` from
uvicorn's HTTP protocol, without the ASGI messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, NamedTuple

import orjson
from prometheus_client import Counter
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.body import Format, body_format, read_limited
from ingest.validation import validate_body
from meterline.errors import MeterlineError, RetryLater, TooManyRequests
from meterline.events import Rules
from meterline.tenants import Principal

if TYPE_CHECKING:
    from ingest.app import Dependencies

log = logging.getLogger("ingest.app")
PATH = "/v1/events"
Answer = tuple[int, bytes, dict[str, str]]


class Request(NamedTuple):
    """A request read in full: who sent it, in which format, and its body."""

    principal: Principal
    fmt: Format
    body: bytes


DISCONNECTED: Answer = (
    400,
    orjson.dumps({"error": "client_disconnected", "message": "the client went away"}),
    {},
)


async def accept(
    deps: Dependencies,
    authorization: str | None,
    content_type: str | None,
    content_length: str | None,
    chunks: AsyncIterator[bytes],
) -> bytes:
    """The 202 body for one request, once the broker acknowledged every accepted event.

    Raises the contract's domain errors (401, 403, 413, 415, 422, 429, 503) and
    ClientDisconnect when the client goes away while sending the body.
    """
    request = await read_request(deps, authorization, content_type, content_length, chunks)
    return await record(deps, request)


async def read_request(
    deps: Dependencies,
    authorization: str | None,
    content_type: str | None,
    content_length: str | None,
    chunks: AsyncIterator[bytes],
) -> Request:
    """The first half of `accept`, paced by the client: who sends, in which format, the body."""
    principal, fmt = await read_head(deps, authorization, content_type)
    body = await read_limited(chunks, deps.max_body_bytes, content_length)
    return Request(principal, fmt, body)


async def read_head(
    deps: Dependencies, authorization: str | None, content_type: str | None
) -> tuple[Principal, Format]:
    """Who sends (401, 403) and in which format (415): what is known before the body."""
    return await deps.keys.principal(authorization), body_format(content_type)


async def record(deps: Dependencies, request: Request) -> bytes:
    """The second half of `accept`, paced by ingest: validate, dedupe, produce, answer."""
    tenant = request.principal.tenant_id
    meters = await deps.meters.meters(tenant)
    rules = Rules(deps.clock.now_ms(), meters, deps.lateness_ms)
    events = validate_body(request.body, request.fmt, tenant, rules, meters, deps.max_batch_events)
    outcome = await deps.sink.submit(request.principal, events)
    deps.metrics.accepted.inc(outcome.accepted)
    if outcome.duplicates:
        deps.metrics.duplicates.inc(outcome.duplicates)
    return orjson.dumps({"accepted": outcome.accepted, "duplicates": outcome.duplicates})


def error_answer(exc: MeterlineError) -> Answer:
    """The one mapping of a domain error to (status, JSON body, headers); logs the 5xx."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RetryLater) else {}
    if exc.status >= 500:
        log.warning("request failed", extra={"status": exc.status, "reason": exc.message})
    return exc.status, orjson.dumps(exc.body()), headers


OVERLOADED = TooManyRequests("ingest is at capacity; retry shortly", retry_after=1)
OVER_SHARE = TooManyRequests(
    "ingest is busy and this tenant sent more than its share of its recent work; retry shortly",
    retry_after=1,
)


class EventsEndpoint:
    """ASGI middleware answering POST /v1/events (see the module docstring); counts those
    requests by status and times them. An unexpected error is counted as a 500 and re-raised,
    so the server answers 500 and logs it. A request takes one of `deps.concurrency`'s slots
    only once its body is in hand (its head and body arrive within the transport's deadlines,
    `meterline.http.guard`), so a client slow to send holds no slot; beyond the limit of
    requests in progress it is answered 429 with Retry-After. Before its body is read, a
    request of a tenant above its share of ingest's recent work may be refused (429) by
    `deps.fairness` (ingest/fairness.py), so a flood does not take the CPU others need."""

    def __init__(self, app: ASGIApp, deps: Dependencies) -> None:
        self.app, self.deps = app, deps
        self._by_status: dict[int, Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        status, body, headers = await self.answer(scope["headers"], _chunks(receive))
        await _respond(send, status, body, headers)

    async def answer(
        self, headers: list[tuple[bytes, bytes]], chunks: AsyncIterator[bytes]
    ) -> Answer:
        """The answer to one POST /v1/events, given its raw headers (names lower-cased, as
        ASGI has them) and its body's chunks; counted by status and timed. This ASGI handler
        and `protocol.EventsProtocol` both serve requests through it."""
        start = time.perf_counter()
        status = 500
        try:
            status, body, extra = await self._answer(headers, chunks)
            return status, body, extra
        finally:
            self.deps.metrics.request_seconds.observe(time.perf_counter() - start)
            self._requests(status).inc()

    async def _answer(
        self, raw_headers: list[tuple[bytes, bytes]], chunks: AsyncIterator[bytes]
    ) -> Answer:
        auth, ctype, length = _headers(raw_headers)
        try:
            principal, fmt = await read_head(self.deps, auth, ctype)
        except MeterlineError as exc:
            return error_answer(exc)
        if not self.deps.fairness.admit(principal.tenant_id, _declared(length)):
            return self._over_share()
        try:
            body = await read_limited(chunks, self.deps.max_body_bytes, length)
        except MeterlineError as exc:
            return error_answer(exc)
        except ClientDisconnect:
            return DISCONNECTED
        return await self._serve(Request(principal, fmt, body))

    async def _serve(self, request: Request) -> Answer:
        """Take a place (fair share, then the limit of requests in progress) and record."""
        fairness, limit = self.deps.fairness, self.deps.concurrency
        tenant = request.principal.tenant_id
        if not fairness.enter(tenant):
            return self._over_share()
        try:
            if not limit.try_enter(tenant):
                return error_answer(OVERLOADED)
            started = time.perf_counter()
            try:
                answer = await record(self.deps, request)
            except MeterlineError as exc:
                return error_answer(exc)
            finally:
                limit.leave(tenant, time.perf_counter() - started)
            return 202, answer, {}
        finally:
            fairness.leave(tenant)

    def _over_share(self) -> Answer:
        self.deps.metrics.over_share.inc()
        return error_answer(OVER_SHARE)

    def _requests(self, status: int) -> Counter:
        found = self._by_status.get(status)
        if found is None:
            found = self._by_status[status] = self.deps.metrics.requests.labels(str(status))
        return found


def _headers(raw: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None, str | None]:
    """Authorization, Content-Type and Content-Length (the first of each), as Starlette reads
    them: names arrive lower-cased, values decode as latin-1."""
    found: dict[bytes, str] = {}
    for name, value in raw:
        if name in _WANTED and name not in found:
            found[name] = value.decode("latin-1")
    get = found.get
    return get(b"authorization"), get(b"content-type"), get(b"content-length")


_WANTED = frozenset({b"authorization", b"content-type", b"content-length"})


def _declared(content_length: str | None) -> int:
    """The body's declared length; 0 when it is not declared (chunked)."""
    return int(content_length) if content_length is not None and content_length.isdigit() else 0


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; ClientDisconnect if the client leaves first."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
