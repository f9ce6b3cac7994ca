"""JSON answers written with orjson (the hot path skips response-model validation)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import Response

from meterline.errors import MeterlineError, RetryLater
from meterline.values import dumps

log = logging.getLogger("entitlements_api")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers, media_type="application/json")


class OrjsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def error_response(exc: MeterlineError) -> Response:
    """The answer to a domain error: its status and body, `Retry-After` when it says when to
    retry; a 5xx is logged. The one mapping of the app's handler and the consume fast path."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RetryLater) else None
    if exc.status >= 500:
        log.warning("request failed", extra={"error": exc.code, "detail": exc.message})
    return json_response(exc.body(), exc.status, headers)
