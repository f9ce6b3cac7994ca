"""`GET /v1/plans`: the plans and credit packs of the key's tenant, as an app's pricing page
shows them (scope `billing`, `read` or `admin`: prices are no secret, and the page is rendered
by the same backend that checks entitlements or starts checkouts). Each plan has its display
name, base price (null for a free plan), metered prices and each feature's entitlement, in the
catalog's order; `features` names each feature (its own name, else its meter's) and, for a
metered one, the meter whose usage `GET /v1/usage` charts. A checkout takes a plan's or a
pack's `key`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from entitlements_api.access import deps_of, principal
from entitlements_api.billing_schemas import PlansOut
from entitlements_api.responses import json_response
from entitlements_api.schemas import ErrorOut
from meterline.catalog import Catalog, Feature
from meterline.errors import NotFound

router = APIRouter(prefix="/v1", tags=["billing"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing, unknown or revoked API key"},
    403: {"model": ErrorOut, "description": "the key lacks the billing, read or admin scope"},
    404: {"model": ErrorOut, "description": "the tenant has no catalog yet"},
}


@router.get(
    "/plans",
    summary="The plans and credit packs, for a pricing page",
    responses={200: {"model": PlansOut}, **ERRORS},
)
async def list_plans(request: Request) -> Response:
    who = principal(request, "billing", "read", "admin")
    current = await asyncio.to_thread(deps_of(request).catalogs.current, who.tenant_id)
    if current is None:
        raise NotFound("this tenant has no catalog yet")
    return json_response(plans_document(current[1]))


def plans_document(catalog: Catalog) -> dict[str, Any]:
    plans = [
        {
            "key": plan.key,
            "name": plan.display_name,
            "default": plan.default,
            "price": None if plan.price is None else plan.price.to_document(),
            "metered_prices": {k: p.to_document() for k, p in plan.metered_prices.items()},
            "features": {k: e.to_json() for k, e in plan.features.items()},
        }
        for plan in catalog.plans
    ]
    packs = [{**pack.to_document(), "name": pack.name or pack.key} for pack in catalog.credit_packs]
    features = [
        {"key": f.key, "name": _name(catalog, f), "kind": f.kind.value, "meter": f.meter}
        for f in catalog.features
    ]
    return {"plans": plans, "credit_packs": packs, "features": features}


def _name(catalog: Catalog, feature: Feature) -> str:
    """The feature's name, else its meter's (a metered feature often names none), else its key."""
    meter = catalog.meter(feature.meter) if feature.meter else None
    if feature.name is None and meter is not None:
        return meter.display_name
    return feature.display_name
