"""Who a request acts for: the principal behind its API key, checked against the route's scopes."""

from __future__ import annotations

from fastapi import Request

from entitlements_api.principals import principal_with_any
from entitlements_api.wiring import Dependencies
from meterline.tenants import Principal


def deps_of(request: Request) -> Dependencies:
    deps: Dependencies = request.app.state.deps
    return deps


def key_first(request: Request) -> None:
    """A dependency of every authenticated route: the key is checked before the request's
    parameters and body, so a request without a valid key gets 401, never a 422 that would
    tell an anonymous caller how the API validates its input."""
    deps_of(request).auth.known(request.headers.get("authorization"))


def principal(request: Request, *scopes: str) -> Principal:
    """The key's principal if it holds any of `scopes`; 401 for a bad key, 403 otherwise."""
    return principal_with_any(deps_of(request).auth, request.headers.get("authorization"), scopes)
