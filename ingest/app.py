"""The ingest HTTP app: POST /v1/events, health, readiness and metrics.

`create_app(deps)` takes everything already built, so tests assemble it from real or in-memory
parts. Domain errors become HTTP answers in one place (`_domain_error`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest import openapi
from ingest.body import body_format, decode, read_limited
from ingest.caches import KeyCache, MeterCache
from ingest.metrics import IngestMetrics
from ingest.sinks import Sink
from ingest.validation import validate_batch
from meterline.clock import Clock, SystemClock
from meterline.errors import MeterlineError, RetryLater
from meterline.events import DEFAULT_LATENESS_MS, Rules

log = logging.getLogger("ingest.app")
Check = Callable[[], Awaitable[bool]]


@dataclass
class Dependencies:
    """What the app needs, built by `ingest.service` (or by a test)."""

    keys: KeyCache
    meters: MeterCache
    sink: Sink
    metrics: IngestMetrics = field(default_factory=IngestMetrics)
    checks: Mapping[str, Check] = field(default_factory=dict)
    max_body_bytes: int = 1_048_576
    max_batch_events: int = 1000
    lateness_ms: int = DEFAULT_LATENESS_MS
    clock: Clock = field(default_factory=SystemClock)
    shutdown: Callable[[], Awaitable[None]] | None = None


def create_app(deps: Dependencies) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if deps.shutdown is not None:
            await deps.shutdown()

    app = FastAPI(
        title="Meterline ingest",
        version="1.0.0",
        description="Usage events in; acknowledged by Kafka before any 202.",
        lifespan=lifespan,
    )
    app.add_exception_handler(MeterlineError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _disconnected)
    _routes(app, deps)
    app.add_middleware(RequestMetrics, metrics=deps.metrics)
    return app


def _routes(app: FastAPI, deps: Dependencies) -> None:
    @app.post(
        "/v1/events",
        status_code=202,
        summary="Send usage events",
        description=openapi.DESCRIPTION,
        responses=openapi.RESPONSES,
        openapi_extra={"requestBody": openapi.REQUEST_BODY},
        response_model=None,
    )
    async def post_events(request: Request) -> Response:
        return await _ingest(request, deps)

    @app.get("/healthz", summary="Liveness", responses={200: {"description": "Alive"}})
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", summary="Readiness: broker, Redis and Postgres answer")
    async def readyz() -> Response:
        return await _ready(deps.checks)

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(deps.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _ingest(request: Request, deps: Dependencies) -> Response:
    headers = request.headers
    principal = await deps.keys.principal(headers.get("authorization"))
    fmt = body_format(headers.get("content-type"))
    body = await read_limited(request.stream(), deps.max_body_bytes, headers.get("content-length"))
    values, _ = decode(body, fmt, deps.max_batch_events)
    meters = await deps.meters.meters(principal.tenant_id)
    rules = Rules(deps.clock.now_ms(), meters, deps.lateness_ms)
    events = validate_batch(values, fmt, principal.tenant_id, rules, meters)
    outcome = await deps.sink.submit(principal, events)
    deps.metrics.accepted.inc(outcome.accepted)
    if outcome.duplicates:
        deps.metrics.duplicates.inc(outcome.duplicates)
    return _json({"accepted": outcome.accepted, "duplicates": outcome.duplicates}, 202)


async def _ready(checks: Mapping[str, Check]) -> Response:
    async def one(check: Check) -> bool:
        try:
            return await asyncio.wait_for(check(), 3.0)
        except Exception:  # a check that fails in any way means "not ready"
            return False

    results = await asyncio.gather(*(one(c) for c in checks.values()))
    status = {name: "ok" if ok else "failing" for name, ok in zip(checks, results, strict=True)}
    ready = all(results)
    return _json({"ready": ready, "checks": status}, 200 if ready else 503)


def _json(doc: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status, headers, media_type="application/json")


async def _domain_error(_request: Request, exc: MeterlineError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RetryLater) else None
    if exc.status >= 500:
        log.warning("request failed", extra={"status": exc.status, "reason": exc.message})
    return _json(exc.body(), exc.status, headers)


async def _disconnected(_request: Request, _exc: Exception) -> Response:
    return _json({"error": "client_disconnected", "message": "the client went away"}, 400)


class RequestMetrics:
    """Counts POST /v1/events by status and times it; other paths pass through untouched."""

    def __init__(self, app: ASGIApp, metrics: IngestMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/events":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.request_seconds.observe(time.perf_counter() - start)
            self.metrics.requests.labels(str(status)).inc()
