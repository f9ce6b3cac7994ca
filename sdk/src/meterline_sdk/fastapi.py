"""A FastAPI dependency that gates a route on a feature: `require_feature("export")`.

    app = FastAPI()
    install(app, Entitlements(url, key, upgrade_url="https://example.com/pricing"))

    @app.get("/export", dependencies=[require_feature("export")])
    def export(): ...

A customer without access gets `403 {"error": "upgrade_required", "message", "upgrade_url",
"feature", "reason"}`. The customer comes from `customer(request)`; by default
`request.state.customer` (set by the app's own auth), else the `X-Customer-Id` header.
`install` registers the 403 handler and the client (`app.state.entitlements`), either an
`Entitlements` (a cache miss is checked in a worker thread) or an `AsyncEntitlements`.

FastAPI is an optional dependency: `pip install "meterline-sdk[fastapi]"`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from meterline_sdk.entitlements import AsyncEntitlements, Entitlement, Entitlements

try:
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse, Response
except ImportError as missing:
    raise ImportError(
        'meterline_sdk.fastapi needs FastAPI: pip install "meterline-sdk[fastapi]"'
    ) from missing

CustomerOf = Callable[[Request], str | None]


class UpgradeRequired(Exception):
    """Raised by `require_feature`; `install` turns it into the 403 answer."""

    def __init__(self, decision: Entitlement, upgrade_url: str | None) -> None:
        super().__init__(f"feature {decision.feature!r} needs an upgrade ({decision.reason})")
        self.decision = decision
        self.upgrade_url = upgrade_url

    def body(self) -> dict[str, Any]:
        return {
            "error": "upgrade_required",
            "message": f"Your plan does not include {self.decision.feature!r} "
            f"({self.decision.reason.replace('_', ' ')}). Upgrade to use it.",
            "upgrade_url": self.upgrade_url,
            "feature": self.decision.feature,
            "reason": self.decision.reason,
        }


Client = Entitlements | AsyncEntitlements


def install(app: FastAPI, client: Client) -> None:
    """Attach `client` to `app` and answer `UpgradeRequired` with the 403 body."""
    app.state.entitlements = client

    async def upgrade_required(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UpgradeRequired)
        return JSONResponse(exc.body(), status_code=403)

    app.add_exception_handler(UpgradeRequired, upgrade_required)


def default_customer(request: Request) -> str | None:
    found = getattr(request.state, "customer", None)
    return str(found) if found else request.headers.get("x-customer-id")


def require_feature(
    feature: str,
    *,
    customer: CustomerOf = default_customer,
    upgrade_url: str | None = None,
) -> Any:
    """A dependency (`Depends`) that passes when the customer has `feature`, and gives the
    route the `Entitlement` when used as a parameter. Refuses with UpgradeRequired (403)."""

    async def check(request: Request) -> Entitlement:
        client: Client = request.app.state.entitlements
        who = customer(request)
        if not who:
            decision = Entitlement(feature, False, "no_customer")
            raise UpgradeRequired(decision, upgrade_url or client.upgrade_url)
        decision = await _check(client, who, feature)
        if not decision.has_access:
            raise UpgradeRequired(decision, upgrade_url or client.upgrade_url)
        return decision

    return Depends(check)


async def _check(client: Client, customer: str, feature: str) -> Entitlement:
    if isinstance(client, AsyncEntitlements):
        return await client.check(customer, feature)
    found = client.cached(customer, feature)
    if found is not None:
        return found
    return await asyncio.to_thread(client.check, customer, feature)
