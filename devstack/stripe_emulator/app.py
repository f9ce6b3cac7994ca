"""The ASGI app: API routes, the request pipeline shared by every API call, control routes.

Every API request goes through `ApiEndpoint`: request id, Bearer auth, parameter decoding
(v1 form with bracket notation, v2 JSON), idempotency, added latency and injected faults,
the handler, the error envelope, the request log and persistence. Handlers are synchronous
and run on the event loop, so each one sees and leaves the store consistent.

Auth: `Authorization: Bearer sk_test_...`; HTTP Basic with the key as the user name also works;
any other key gets a 401 `authentication_error`. The v2 stream takes a session token instead
(`sessions.py`). Errors are `{"error": {"type", "code", "message", "param", "doc_url"}}`; an
unknown object is a 404 `resource_missing`, and so is an unknown `/v1` or `/v2` path. Every
response has `Request-Id: req_...` and `Stripe-Version`. There are no rate limits except
through fault injection (`faults.py`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import control, hosted, hosted_invoice, portal, routes
from .config import EmulatorConfig
from .core import Call, Emulator, current_request, public
from .errors import StripeError, invalid, unauthorized
from .forms import Params, decode_form
from .idempotency import fingerprint

JSON = dict[str, Any]
Handler = Callable[[Emulator, Call], JSON]
STREAM_PATH = "/v2/billing/meter_event_stream"
logger = logging.getLogger(__name__)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response without internal fields."""
    return Response(
        orjson.dumps(public(body)),
        status_code=status,
        headers=headers or {},
        media_type="application/json",
    )


class ApiEndpoint:
    """Wraps a handler in the request pipeline described in the module docstring."""

    def __init__(self, emu: Emulator, handler: Handler) -> None:
        self.emu = emu
        self.handler = handler

    async def handle(self, request: Request) -> Response:
        """Serve one API request (never raises: errors become the envelope)."""
        request_id = "req_" + secrets.token_hex(7)
        entry: JSON = {
            "request_id": request_id,
            "method": request.method,
            "path": request.url.path,
            "at": self.emu.clock.now(),
            "base": str(request.base_url).rstrip("/"),
        }
        token = current_request.set(entry)
        try:
            status, body, headers = await self._serve(request, entry)
        except StripeError as exc:
            status, body, headers = exc.status, exc.body(), dict(exc.headers)
        except Exception as exc:  # a bug in a handler must still answer an envelope
            logger.exception("emulator handler failed")
            failure = StripeError(500, f"Emulator error: {exc}", type_="api_error")
            status, body, headers = 500, failure.body(), {}
        finally:
            current_request.reset(token)
        headers["Request-Id"] = request_id
        headers["Stripe-Version"] = self.emu.config.api_version
        entry["status"] = status
        self._log(entry)
        return json_response(status, body, headers)

    async def _serve(self, request: Request, entry: JSON) -> tuple[int, Any, dict[str, str]]:
        token = _bearer(request)
        if request.url.path != STREAM_PATH:
            _check_secret_key(token)
        params = await _decode(request)
        entry["params"] = params
        key = request.headers.get("Idempotency-Key") if request.method != "GET" else None
        entry["idempotency_key"] = key
        call = Call(
            request.method, request.url.path, Params(params), dict(request.path_params), token
        )
        if key is None:
            return await self._execute(call, entry)
        return await self._idempotent(call, entry, token, key)

    async def _idempotent(
        self, call: Call, entry: JSON, scope: str, key: str
    ) -> tuple[int, Any, dict[str, str]]:
        idem = self.emu.idempotency
        digest = fingerprint(call.method, call.path, call.params.data)
        saved = idem.lookup(scope, key, digest, self.emu.clock.now())
        if saved is not None:
            entry["replayed"] = True
            headers = {
                **saved["headers"],
                "Idempotent-Replayed": "true",
                "Original-Request": saved["request_id"],
            }
            return saved["status"], saved["body"], headers
        idem.begin(scope, key)
        try:
            status, body, headers = await self._execute(call, entry)
        except StripeError as exc:
            if exc.saved:
                answer = {"status": exc.status, "body": exc.body(), "headers": exc.headers}
                idem.save(
                    scope,
                    key,
                    digest,
                    {**answer, "request_id": entry["request_id"]},
                    self.emu.clock.now(),
                )
            raise
        finally:
            idem.finish(scope, key)
        answer = {
            "status": status,
            "body": public(body),
            "headers": headers,
            "request_id": entry["request_id"],
        }
        idem.save(scope, key, digest, answer, self.emu.clock.now())
        return status, body, headers

    async def _execute(self, call: Call, entry: JSON) -> tuple[int, Any, dict[str, str]]:
        faults = self.emu.faults
        delay = faults.latency_seconds(call.path)
        if delay:
            await asyncio.sleep(delay)
        fault = faults.decide(call.method, call.path)
        entry["fault"] = fault
        if fault == "rate_limited":
            raise StripeError(429, "Too many requests hit the API too quickly.", code="rate_limit")
        if fault == "server_error":
            raise StripeError(500, "An unknown error occurred (injected).", type_="api_error")
        body = self.handler(self.emu, call)
        if call.method != "GET":
            self.emu.persist()
        if fault == "server_error_after":
            raise StripeError(
                500,
                "An unknown error occurred after processing (injected).",
                type_="api_error",
                saved=True,
            )
        return 200, body, {}

    def _log(self, entry: JSON) -> None:
        log = self.emu.store.requests
        log.append(entry)
        overflow = len(log) - self.emu.config.max_logged_requests
        if overflow > 0:
            del log[:overflow]


def _bearer(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            token = base64.b64decode(token.strip()).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            token = ""
        scheme = "bearer"
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("You did not provide an API key. Send it as `Authorization: Bearer`.")
    return token.strip()


def _check_secret_key(token: str) -> None:
    if not token.startswith("sk_test_"):
        raise unauthorized(f"Invalid API Key provided: {token[:12]}***")


async def _decode(request: Request) -> JSON:
    if request.method in ("GET", "DELETE"):
        return decode_form(request.url.query)
    raw = await request.body()
    if request.url.path.startswith("/v2/"):
        if not raw.strip():
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise invalid("Request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise invalid("Request body must be a JSON object.")
        return data
    return {**decode_form(request.url.query), **decode_form(raw.decode("utf-8", "replace"))}


def unknown_route(emu: Emulator) -> Handler:
    """The handler for API paths the emulator does not know (a Stripe-style 404)."""

    def handler(_: Emulator, call: Call) -> JSON:
        raise StripeError(
            404, f"Unrecognized request URL ({call.method}: {call.path}).", code="resource_missing"
        )

    return handler


def api_routes(emu: Emulator) -> list[BaseRoute]:
    """Starlette routes for every emulated API endpoint, plus the catch-all 404."""
    table: list[BaseRoute] = [
        Route(path, ApiEndpoint(emu, handler).handle, methods=[method])
        for method, path, handler in routes.TABLE
    ]
    catch_all = ApiEndpoint(emu, unknown_route(emu)).handle
    methods = ["GET", "POST", "DELETE"]
    table.append(Route("/v1/{rest:path}", catch_all, methods=methods))
    table.append(Route("/v2/{rest:path}", catch_all, methods=methods))
    return table


class RememberBase:
    """Keeps the emulator's own address, as each request reached it, in `Emulator.base_url`:
    an invoice finalized by a control call or a hosted page links its hosted page there too."""

    def __init__(self, app: ASGIApp, emu: Emulator) -> None:
        self.app = app
        self.emu = emu

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.emu.base_url = str(Request(scope).base_url).rstrip("/")
        await self.app(scope, receive, send)


def create_app(config: EmulatorConfig | None = None, emulator: Emulator | None = None) -> Starlette:
    """The emulator's ASGI app. Raises ValueError listing every configuration problem."""
    config = config or EmulatorConfig()
    problems = config.validate()
    if problems:
        raise ValueError("invalid emulator configuration: " + "; ".join(problems))
    emu = emulator or Emulator(config)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        emu.webhooks.start()
        try:
            yield
        finally:
            await emu.webhooks.close()
            emu.persist()

    pages = [
        *control.routes(emu),
        *hosted.routes(emu),
        *hosted_invoice.routes(emu),
        *portal.routes(emu),
        *api_routes(emu),
    ]
    remember = Middleware(RememberBase, emu=emu)
    app = Starlette(routes=pages, lifespan=lifespan, middleware=[remember])
    app.state.emulator = emu
    return app
