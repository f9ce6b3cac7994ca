"""The admin API (scope `admin`): catalog, customers, plans, grants and keys of the key's tenant."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from entitlements_api.access import deps_of, principal
from entitlements_api.responses import json_response
from entitlements_api.schemas import (
    CatalogApplyOut,
    CustomerIn,
    CustomerPath,
    ErrorOut,
    GrantIn,
    KeyIn,
    SubscriptionIn,
)
from meterline.catalog import load_catalog, parse_catalog
from meterline.entitlements import NewGrant, Subscription
from meterline.errors import FieldError, NotFound, UnsupportedMediaType, ValidationFailed
from meterline.inputs import IDENTIFIER
from meterline.stripe import apply_and_sync, ensure_stripe_customer

router = APIRouter(prefix="/v1/admin", tags=["admin"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    422: {"model": ErrorOut},
}
CATALOG_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


@router.get("/catalog", summary="The current catalog", responses=ERRORS)
async def get_catalog(request: Request) -> Response:
    who = principal(request, "admin")
    current = deps_of(request).catalogs.current(who.tenant_id)
    if current is None:
        raise NotFound("this tenant has no catalog yet")
    return json_response({"version": current[0], "catalog": current[1].to_document()})


@router.put(
    "/catalog",
    summary="Validate, apply and sync a catalog to Stripe",
    responses={200: {"model": CatalogApplyOut}, **ERRORS},
    openapi_extra=CATALOG_BODY,
)
async def put_catalog(request: Request) -> Response:
    """The catalog file as YAML (`application/yaml`) or JSON. Every problem is reported with
    its path (422). Applying an unchanged catalog stores nothing; Stripe is synced every time
    (idempotent: lookup keys and stable ids, never duplicates)."""
    who = principal(request, "admin")
    catalog = _parse(request.headers.get("content-type", ""), await request.body())
    deps = deps_of(request)
    result = await asyncio.to_thread(
        apply_and_sync, deps.catalogs, deps.catalog_sync(), who.tenant_id, catalog
    )
    deps.service.invalidate(who.tenant_id)
    body = {
        "version": result.version,
        "changed": not result.diff.is_empty,
        "changes": result.diff.lines() if not result.diff.is_empty else [],
        "stripe": result.stripe.lines if result.stripe else [],
    }
    return json_response(body)


def _parse(content_type: str, raw: bytes) -> Any:
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            return parse_catalog(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            raise ValidationFailed([FieldError("", f"invalid JSON: {exc}")]) from None
    if kind in ("application/yaml", "application/x-yaml", "text/yaml", "text/plain"):
        return load_catalog(raw.decode("utf-8", "replace"))
    raise UnsupportedMediaType("send the catalog as application/yaml or application/json")


@router.get("/customers", summary="Customers, by id", responses=ERRORS)
async def list_customers(
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    after: str | None = Query(None, max_length=128, pattern=IDENTIFIER),
) -> Response:
    who = principal(request, "admin")
    found = deps_of(request).customers.list(who.tenant_id, limit, after)
    return json_response({"data": [c.as_dict() for c in found]})


@router.post("/customers", status_code=201, summary="Create a customer", responses=ERRORS)
async def create_customer(request: Request, body: CustomerIn) -> Response:
    """409 when the customer exists."""
    who = principal(request, "admin")
    created = deps_of(request).customers.create(who.tenant_id, body.id, body.name, body.email)
    return json_response(created.as_dict(), 201)


@router.get("/customers/{customer}", summary="A customer, its plan and grants", responses=ERRORS)
async def get_customer(request: Request, customer: str = CustomerPath) -> Response:
    who = principal(request, "admin")
    deps = deps_of(request)
    found = deps.customers.get(who.tenant_id, customer)
    if found is None:
        raise NotFound(f"no customer {customer!r}")
    sub = deps.subscriptions.get(who.tenant_id, customer)
    grants = deps.grants.list(who.tenant_id, customer, include_voided=True)
    return json_response(
        {
            **found.as_dict(),
            "subscription": sub.as_dict() if sub else None,
            "grants": [g.as_dict() for g in grants],
        }
    )


@router.post(
    "/customers/{customer}/stripe",
    summary="Link the customer to a Stripe customer (created on first need)",
    responses=ERRORS,
)
async def link_stripe(request: Request, customer: str = CustomerPath) -> Response:
    who = principal(request, "admin")
    deps = deps_of(request)
    if deps.stripe is None:
        raise NotFound("Stripe is not configured")
    stripe_id = await asyncio.to_thread(
        ensure_stripe_customer, deps.stripe, deps.customers, who.tenant_id, customer
    )
    return json_response({"id": customer, "stripe_customer_id": stripe_id})


@router.put(
    "/customers/{customer}/subscription",
    summary="Set a manual or lifetime plan",
    responses=ERRORS,
)
async def put_subscription(
    request: Request, body: SubscriptionIn, customer: str = CustomerPath
) -> Response:
    """A plan without Stripe: `manual` (optionally with a period that ends after it starts) or
    `lifetime` (no period)."""
    who = principal(request, "admin")
    deps = deps_of(request)
    _check_period(body)
    if deps.service.catalog(who.tenant_id).plan(body.plan) is None:
        raise ValidationFailed([FieldError("plan", f"no plan {body.plan!r} in the catalog")])
    if deps.customers.get(who.tenant_id, customer) is None:
        raise NotFound(f"no customer {customer!r}")
    periodic = body.source == "manual"
    sub = Subscription(
        who.tenant_id,
        customer,
        body.plan,
        body.status,
        body.source,
        current_period_start=body.current_period_start if periodic else None,
        current_period_end=body.current_period_end if periodic else None,
    )
    deps.subscriptions.put(sub)
    deps.service.invalidate(who.tenant_id, customer)
    return json_response(sub.as_dict())


def _check_period(body: SubscriptionIn) -> None:
    start, end = body.current_period_start, body.current_period_end
    if start is not None and end is not None and end <= start:
        message = "must be after current_period_start"
        raise ValidationFailed([FieldError("current_period_end", message)])


@router.delete(
    "/customers/{customer}/subscription",
    status_code=204,
    summary="Back to the default plan",
    responses=ERRORS,
)
async def delete_subscription(request: Request, customer: str = CustomerPath) -> Response:
    who = principal(request, "admin")
    deps = deps_of(request)
    deps.subscriptions.delete(who.tenant_id, customer)
    deps.service.invalidate(who.tenant_id, customer)
    return Response(status_code=204)


@router.get("/customers/{customer}/grants", summary="A customer's grants", responses=ERRORS)
async def list_grants(
    request: Request, customer: str = CustomerPath, include_voided: bool = False
) -> Response:
    who = principal(request, "admin")
    grants = deps_of(request).grants.list(who.tenant_id, customer, include_voided)
    return json_response({"data": [g.as_dict() for g in grants]})


@router.post(
    "/customers/{customer}/grants",
    status_code=201,
    summary="Add a credit, top-up or override",
    responses=ERRORS,
)
async def add_grant(request: Request, body: GrantIn, customer: str = CustomerPath) -> Response:
    who = principal(request, "admin")
    deps = deps_of(request)
    if deps.service.catalog(who.tenant_id).feature(body.feature) is None:
        raise ValidationFailed([FieldError("feature", f"no feature {body.feature!r}")])
    grant = NewGrant(
        customer,
        body.feature,
        body.kind,
        body.amount,
        body.effective_at,
        body.expires_at,
        body.note,
    )
    created = deps.grants.add(who.tenant_id, grant)
    deps.service.invalidate(who.tenant_id, customer)
    return json_response(created.as_dict(), 201)


@router.post("/grants/{grant_id}/void", summary="Void a grant", responses=ERRORS)
async def void_grant(request: Request, grant_id: int = Path(ge=1, le=2**63 - 1)) -> Response:
    who = principal(request, "admin")
    deps = deps_of(request)
    voided = deps.grants.void(who.tenant_id, grant_id)
    deps.service.invalidate(who.tenant_id, voided.customer)
    return json_response(voided.as_dict())


@router.get("/keys", summary="The tenant's API keys (never their secrets)", responses=ERRORS)
async def list_keys(request: Request) -> Response:
    who = principal(request, "admin")
    keys = deps_of(request).tenants.list_keys(who.tenant_name)
    return json_response({"data": [_key(k) for k in keys]})


@router.post("/keys", status_code=201, summary="Create a key (shown once)", responses=ERRORS)
async def create_key(request: Request, body: KeyIn) -> Response:
    who = principal(request, "admin")
    info, key = deps_of(request).tenants.create_key(who.tenant_name, list(body.scopes))
    return json_response({**_key(info), "key": key}, 201)


@router.post("/keys/{key_id}/revoke", summary="Revoke a key", responses=ERRORS)
async def revoke_key(
    request: Request, key_id: str = Path(max_length=64, pattern=IDENTIFIER)
) -> Response:
    """Services stop accepting the key within their auth cache TTL (30 s)."""
    who = principal(request, "admin")
    tenants = deps_of(request).tenants
    if key_id not in {k.id for k in tenants.list_keys(who.tenant_name)}:
        raise NotFound(f"no key {key_id!r}")
    tenants.revoke_key(key_id)
    return json_response({"id": key_id, "revoked": True})


def _key(k: Any) -> dict[str, Any]:
    return {
        "id": k.id,
        "scopes": list(k.scopes),
        "created_at": k.created_at.isoformat() if k.created_at else None,
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
    }
