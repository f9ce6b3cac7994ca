"""The billing API for an app's backend, under `/v1/customers/{customer}/...`.

Scope `billing` (or `admin`, which holds every right of its tenant). An app's backend starts
checkouts and plan changes for its signed-in users; it needs no catalog or key rights, so a
leaked billing key cannot rewrite prices or mint keys. The customer is created on first use.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from entitlements_api.access import deps_of, principal
from entitlements_api.billing_schemas import CheckoutIn, CheckoutOut
from entitlements_api.responses import json_response
from entitlements_api.schemas import CustomerPath, ErrorOut
from meterline.billing import BillingCheckout, CheckoutRequest
from meterline.errors import NotFound

router = APIRouter(prefix="/v1/customers", tags=["billing"])
SCOPES = ("billing", "admin")
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing, unknown or revoked API key"},
    403: {"model": ErrorOut, "description": "the key lacks the billing (or admin) scope"},
    404: {"model": ErrorOut, "description": "Stripe is not configured, or no catalog"},
    409: {"model": ErrorOut, "description": "the request conflicts with the customer's state"},
    422: {"model": ErrorOut, "description": "invalid input; each problem names its field"},
}


def _billing(request: Request) -> BillingCheckout:
    billing = deps_of(request).billing
    if billing is None:
        raise NotFound("Stripe is not configured")
    return billing


@router.post(
    "/{customer}/checkout",
    summary="Start a Stripe Checkout for a plan or a credit pack",
    status_code=201,
    responses={201: {"model": CheckoutOut}, **ERRORS},
)
async def start_checkout(
    request: Request, body: CheckoutIn, customer: str = CustomerPath
) -> Response:
    """A plan opens a subscription-mode session, a credit pack a payment-mode one; send the user
    to `url`. When Stripe reports the session completed (`checkout.session.completed`), the plan
    becomes active or the pack's credits become grants, once per session. 409 when the customer
    already has a live subscription (change the plan instead)."""
    who = principal(request, *SCOPES)
    req = CheckoutRequest(body.plan, body.credit_pack, body.success_url, body.cancel_url)
    session = await asyncio.to_thread(_billing(request).start, who.tenant_id, customer, req)
    kind = "plan" if body.plan else "credit_pack"
    out = {
        "session_id": session.id,
        "url": session.url,
        "kind": kind,
        "item": body.plan or body.credit_pack,
    }
    return json_response(out, 201)
