"""The FastAPI app: routes, the one place domain errors become HTTP answers, health and metrics.

Scopes: `read` for decisions and usage; `ingest` or `admin` for consume (it records usage, as
ingest does); `admin` for the admin API. The Stripe webhook is authenticated by its signature.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entitlements_api import admin, billing, decisions, plans, usage, webhook
from entitlements_api.access import key_first
from entitlements_api.consume_path import ConsumeFastPath
from entitlements_api.fastpath import CheckFastPath
from entitlements_api.metrics import Metrics
from entitlements_api.responses import OrjsonResponse, error_response, json_response
from entitlements_api.wiring import Dependencies
from meterline.errors import FieldError, MeterlineError, ValidationFailed
from meterline.http.openapi import api_version, declare_bearer, operation_id, paths
from meterline.inputs import friendly_message

log = logging.getLogger("entitlements_api")

DESCRIPTION = """Entitlement decisions and reservations, usage queries, catalog and customer
administration, and Stripe webhooks. Every call but the webhook and health checks takes
`Authorization: Bearer <api key>`; the tenant comes from the key alone."""


def create_server(deps: Dependencies) -> CheckFastPath:
    """The app as served: `create_app` behind the lean paths for plain checks (`fastpath`)
    and consumes (`consume_path`); serve it with `protocol.protocol_for(server)` as uvicorn's
    HTTP protocol, which answers cached checks before ASGI."""
    prefix = decisions.router.prefix
    consumes = ConsumeFastPath(create_app(deps), deps, prefix + decisions.CONSUME_ROUTE)
    return CheckFastPath(consumes, deps, prefix + decisions.CHECK_ROUTE)


def create_app(deps: Dependencies) -> FastAPI:
    """Every route, documented in the OpenAPI schema; answers exactly as `create_server`."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        deps.close()

    app = FastAPI(
        title="Meterline entitlements",
        version=api_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        redirect_slashes=False,
        generate_unique_id_function=operation_id,
    )
    app.state.deps = deps
    _errors(app, deps)
    _observe(app, deps)
    _health(app, deps)
    for module in (decisions, usage, admin, billing, plans):
        app.include_router(module.router, dependencies=[Depends(key_first)])
    app.include_router(webhook.router)
    declare_bearer(app, public=paths(webhook.router))
    return app


def _errors(app: FastAPI, deps: Dependencies) -> None:
    @app.exception_handler(MeterlineError)
    async def domain(_request: Request, exc: MeterlineError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        errors = [_field_error(e) for e in exc.errors()]
        return json_response(ValidationFailed(errors).body(), 422)


def _field_error(err: Any) -> FieldError:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    return FieldError(".".join(loc), friendly_message(err))


def _observe(app: FastAPI, deps: Dependencies) -> None:
    app.add_middleware(_Measure, metrics=deps.metrics)


class _Measure:
    """Counts and times each request by route template (a plain ASGI middleware: cheap)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, capture)
        finally:
            name = getattr(scope.get("route"), "path", "unmatched")
            self._metrics.requests.labels(name, str(status)).inc()
            self._metrics.latency.labels(name).observe(time.perf_counter() - start)


def _health(app: FastAPI, deps: Dependencies) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        failed = {}
        for name, check in deps.ready_checks.items():
            try:
                check()
            except Exception as exc:
                failed[name] = str(exc)[:200]
        status = 503 if failed else 200
        return json_response({"status": "ready" if not failed else "not ready", **failed}, status)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(deps.metrics.registry), media_type=CONTENT_TYPE_LATEST)
