"""Scopes for the finance API and pages: `read` to look, `admin` to change.

An `admin` key may also do what `read` allows, so one admin key is enough for finance.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from meterline.auth import Authenticator
from meterline.errors import Forbidden
from meterline.tenants import Principal


def authorize(auth: Authenticator, header: str | None, scope: str) -> Principal:
    """The key's principal if it holds `scope` (or `admin` where `read` is asked); Forbidden
    names the scope the call needs."""
    try:
        return auth.principal(header, scope)
    except Forbidden:
        if scope != "read":
            raise
    try:
        return auth.principal(header, "admin")
    except Forbidden:
        raise Forbidden("this key lacks the 'read' scope (or 'admin')") from None


def principal(scope: str) -> Any:
    """A FastAPI dependency: the request's principal holding `scope`."""

    def dependency(request: Request) -> Principal:
        auth: Authenticator = request.app.state.reporter.auth
        return authorize(auth, request.headers.get("authorization"), scope)

    return Depends(dependency)


Reader = Annotated[Principal, principal("read")]
Admin = Annotated[Principal, principal("admin")]
