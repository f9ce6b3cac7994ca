"""What every service's OpenAPI document shares: one version (the project's), operation ids
that are the routes' names, and HTTP bearer auth declared on every authenticated operation.

    app = FastAPI(title=..., version=api_version(), generate_unique_id_function=operation_id)
    declare_bearer(app, public={"/v1/stripe/webhook"})

The documents are committed under openapi/ (`python -m openapi` rewrites them) and a test
fails when the code's document differs from the committed one.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Collection
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

BEARER = "bearer"
SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "A Meterline API key: `Authorization: Bearer <key>`. The tenant comes from "
    "the key alone; each operation names the scope it needs.",
}
METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def api_version() -> str:
    """The project's version, the one `info.version` of every service (from the installed
    distribution's metadata; raises PackageNotFoundError when meterline is not installed)."""
    return importlib.metadata.version("meterline")


def operation_id(route: APIRoute) -> str:
    """A route's operation id: its name (the function's name unless given), stable and
    readable; `declare_bearer` refuses a document where two routes share one."""
    return route.name


def declare_bearer(app: FastAPI, public: Collection[str] = ()) -> None:
    """Make `app.openapi()` declare the bearer scheme and require it on every operation under
    /v1/ whose path is not in `public` (routes authenticated otherwise, e.g. by a signature).

    The document is then built on first use, as FastAPI does; building it raises ValueError
    when two operations share an id (FastAPI itself only warns).
    """
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _secure(build(), frozenset(public))
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def paths(router: APIRouter) -> set[str]:
    """The paths of a router's routes (for `declare_bearer`'s `public`)."""
    return {route.path for route in router.routes if isinstance(route, APIRoute)}


def hide(app: FastAPI, prefix: str) -> None:
    """Leave the routes under `prefix` out of the document (pages for browsers, not an API)."""
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path.startswith(prefix):
            route.include_in_schema = False


def _secure(doc: dict[str, Any], public: frozenset[str]) -> None:
    seen: dict[str, str] = {}
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            op_id = operation["operationId"]
            if op_id in seen:
                raise ValueError(f"operation id {op_id!r} of {where} is also {seen[op_id]}'s")
            seen[op_id] = where
            if path.startswith("/v1/") and path not in public:
                operation["security"] = [{BEARER: []}]
    doc.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER] = SCHEME
