"""The ingest HTTP app: POST /v1/events, health, readiness and metrics.

`create_app(deps)` takes everything already built, so tests assemble it from real or in-memory
parts; `create_server(deps)` is what runs: the app behind `endpoint.EventsEndpoint`, which
answers POST /v1/events itself (and which `python -m ingest` serves over
`protocol.EventsProtocol`, which hands it that route without the ASGI layer). The FastAPI route
documents it and answers the same way.
Domain errors become HTTP answers in one place (`endpoint.error_answer`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect

from ingest import openapi
from ingest.caches import KeyCache, MeterCache
from ingest.concurrency import ConcurrencyLimit
from ingest.endpoint import DISCONNECTED, EventsEndpoint, accept, error_answer
from ingest.fairness import FairAdmission
from ingest.metrics import IngestMetrics
from ingest.sinks import Sink
from meterline.clock import Clock, SystemClock
from meterline.errors import MeterlineError
from meterline.events import DEFAULT_LATENESS_MS
from meterline.http.openapi import api_version, declare_bearer, operation_id

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
    concurrency: ConcurrencyLimit = field(default_factory=lambda: ConcurrencyLimit(128, 0.5))
    fairness: FairAdmission = field(default_factory=lambda: FairAdmission(0.002))
    lateness_ms: int = DEFAULT_LATENESS_MS
    clock: Clock = field(default_factory=SystemClock)
    shutdown: Callable[[], Awaitable[None]] | None = None


def create_server(deps: Dependencies) -> EventsEndpoint:
    """The app as served: `create_app` behind the lean handler of POST /v1/events."""
    return EventsEndpoint(create_app(deps), deps)


def create_app(deps: Dependencies) -> FastAPI:
    """Every route, documented in the OpenAPI schema; answers exactly as `create_server`."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if deps.shutdown is not None:
            await deps.shutdown()

    app = FastAPI(
        title="Meterline ingest",
        version=api_version(),
        description="Usage events in; acknowledged by Kafka before any 202.",
        lifespan=lifespan,
        redirect_slashes=False,  # a redirect would reflect the request's Host header
        generate_unique_id_function=operation_id,
    )
    app.add_exception_handler(MeterlineError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _disconnected)
    _routes(app, deps)
    declare_bearer(app)
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
        get = request.headers.get
        auth, ctype, length = get("authorization"), get("content-type"), get("content-length")
        body = await accept(deps, auth, ctype, length, request.stream())
        return Response(body, 202, media_type="application/json")

    @app.get("/healthz", summary="Liveness", responses={200: {"description": "Alive"}})
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", summary="Readiness: broker, Redis and Postgres answer")
    async def readyz() -> Response:
        return await _ready(deps.checks)

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(deps.metrics.registry), media_type=CONTENT_TYPE_LATEST)


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
    status, body, headers = error_answer(exc)
    return Response(body, status, headers, media_type="application/json")


async def _disconnected(_request: Request, _exc: Exception) -> Response:
    status, body, headers = DISCONNECTED
    return Response(body, status, headers, media_type="application/json")
