"""A lean path for consumes, `POST /v1/customers/{c}/entitlements/{f}/consume`, beside FastAPI.

FastAPI's routing, dependencies, body model and response building cost a consume more CPU
than its own Python around the round trips once those are batched (`batching.py`).
`ConsumeFastPath` wraps the app and answers a consume itself when the request is plainly well
formed: no query string, a JSON body (`Content-Type: application/json`) that orjson reads as
an object with `event_id` and at most `amount` besides, path parameters within the route's
bounds, and a key holding the `ingest` or `admin` scope. It then calls what the FastAPI route
calls (`decisions.consumed`: the same batcher, metrics and service) and answers with the same
`Response` objects (`json_response`, `responses.error_response`), so status, headers and body
bytes are the route's. Anything else — a bad or missing key, a body the model would refuse
(another key, no `event_id`, not JSON, JSON orjson does not read such as `NaN` or integers past
64 bits), another content type — goes to the FastAPI app with the body replayed, which answers
with the documented errors. A key's principal is reused for PRINCIPAL_TTL seconds and fetched
in a worker thread (`principals.RecentPrincipals`, as for checks), so the Authenticator's
Postgres read never stalls the loop. The FastAPI route stays the documented reference (OpenAPI);
`tests/entitlements/test_consume_path.py` compares the two answer for answer.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entitlements_api.decisions import consumed
from entitlements_api.fastpath import PRINCIPAL_TTL, check_path
from entitlements_api.principals import RecentPrincipals
from entitlements_api.responses import error_response, json_response
from entitlements_api.wiring import Dependencies
from meterline.entitlements.consume import ConsumeAsk
from meterline.errors import MeterlineError

SCOPES = ("ingest", "admin")
_FIELDS = frozenset({"amount", "event_id"})
_SUFFIX = "/consume"


class ConsumeFastPath:
    """ASGI middleware in front of the app: answers well-formed consumes (see the module
    docstring) and hands every other request, and every lifespan event, to `app`. Records the
    request metrics of what it answers under the route template `route`, as the app's own
    measuring middleware does (labelled when first used, as there); an unexpected error is
    counted as a 500 and re-raised."""

    def __init__(self, app: ASGIApp, deps: Dependencies, route: str) -> None:
        self._app = app
        self._deps = deps
        self._route = route
        self._principals = RecentPrincipals(deps.auth, PRINCIPAL_TTL, scopes=SCOPES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = consume_path(scope["path"]) if _plain_post(scope) else None
        if found is None or not _json(scope):
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()
        body = await _body(receive)
        ask = None if body is None else await self._ask(scope, *found, body)
        if ask is None:
            await self._app(scope, _replay(body or b"", receive), send)
            return
        try:
            status, answer = await consumed(self._deps, ask)
            response = json_response(answer, status)
        except MeterlineError as exc:
            response = error_response(exc)
        except Exception:
            self._deps.metrics.requests.labels(self._route, "500").inc()
            raise
        await response(scope, receive, send)
        metrics = self._deps.metrics
        metrics.requests.labels(self._route, str(response.status_code)).inc()
        metrics.latency.labels(self._route).observe(time.perf_counter() - start)

    async def _ask(
        self, scope: Scope, customer: str, feature: str, body: bytes
    ) -> ConsumeAsk | None:
        """The consume asked for, or None when the app must answer (an error of the key or
        the body, which the app reports in its own words)."""
        fields = _fields(body)
        if fields is None:
            return None
        header = _authorization(scope)
        try:
            who = self._principals.now(header) or await self._principals.fetch(header)
        except MeterlineError:
            return None
        amount = fields.get("amount", 1)
        return ConsumeAsk(who.tenant_id, customer, feature, amount, fields["event_id"])


def consume_path(path: str) -> tuple[str, str] | None:
    """(customer, feature) of `/v1/customers/{customer}/entitlements/{feature}/consume` within
    the route's bounds (as `fastpath.check_path`), else None."""
    if not path.endswith(_SUFFIX):
        return None
    return check_path(path[: -len(_SUFFIX)])


def _plain_post(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "POST" and not scope["query_string"]


def _json(scope: Scope) -> bool:
    """Whether the request's first Content-Type is `application/json` (parameters aside)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json"
    return False


def _fields(body: bytes) -> dict[str, Any] | None:
    """The body's fields when the route's model would take them as they are, else None."""
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(fields, dict) or "event_id" not in fields or not fields.keys() <= _FIELDS:
        return None
    return fields


async def _body(receive: Receive) -> bytes | None:
    """The whole request body; None when the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already, then defers to the real one."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _authorization(scope: Scope) -> str | None:
    """The first Authorization header, as Starlette's `request.headers.get` reads it."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            decoded: str = value.decode("latin-1")
            return decoded
    return None
