"""JSON answers written with orjson (the hot path skips response-model validation)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from meterline.values import dumps


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers, media_type="application/json")


class OrjsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)
