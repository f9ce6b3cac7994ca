"""Entitlement checks and consumes under `/v1/customers/{customer}/entitlements`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from entitlements_api.access import deps_of, principal
from entitlements_api.responses import json_response
from entitlements_api.schemas import (
    ConsumeConflictOut,
    ConsumeIn,
    ConsumeOut,
    CustomerPath,
    DecisionOut,
    EntitlementsOut,
    ErrorOut,
)
from entitlements_api.wiring import Dependencies
from meterline.entitlements import iso
from meterline.entitlements.consume import ConsumeAsk

router = APIRouter(prefix="/v1/customers", tags=["entitlements"])

CHECK_ROUTE = "/{customer}/entitlements/{feature}"
CONSUME_ROUTE = CHECK_ROUTE + "/consume"
MAX_FEATURE = 64
FeaturePath = Path(min_length=1, max_length=MAX_FEATURE, description="a feature key of the catalog")
ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "missing, unknown or revoked API key"},
    403: {"model": ErrorOut, "description": "the key lacks the scope"},
    404: {"model": ErrorOut, "description": "unknown feature, or the tenant has no catalog"},
    422: {"model": ErrorOut, "description": "invalid input (every problem listed)"},
}


@router.get(
    "/{customer}/entitlements",
    summary="Every feature's decision for a customer",
    responses={200: {"model": EntitlementsOut}, **ERRORS},
)
async def all_entitlements(request: Request, customer: str = CustomerPath) -> Response:
    """One decision per feature of the catalog (scope `read`)."""
    who = principal(request, "read")
    service = deps_of(request).service
    found = await asyncio.to_thread(service.check_all, who.tenant_id, customer)
    now = deps_of(request).clock.now()
    body = {"customer": customer, "entitlements": [d.as_dict() for d in found], "as_of": iso(now)}
    return json_response(body)


@router.get(
    CHECK_ROUTE,
    summary="One feature's decision",
    responses={200: {"model": DecisionOut}, **ERRORS},
)
async def one_entitlement(
    request: Request,
    customer: str = CustomerPath,
    feature: str = FeaturePath,
    amount: float | None = Query(
        None, gt=0, le=1e15, description="check room for this amount (default: any room left)"
    ),
) -> Response:
    """Whether the customer may use the feature now, and why (scope `read`). Always 200: the
    answer is in `has_access` and `reason`. Plain checks may be up to the decision cache's TTL
    (1 s by default) behind; use consume for an exact, atomic check-and-record. A change made
    through any replica (consume, webhook, admin call) drops the cached answers of every
    replica at once (Redis pub/sub; within 1 s while a replica's subscription is down).

    Served by `fastpath.CheckFastPath` when there is no `amount` and the check succeeds; this
    route answers the rest, and documents both. Decisions that read the usage (Redis, or
    Postgres) are made in a worker thread, as consumes are, so they never stall the loop."""
    who = principal(request, "read")
    service = deps_of(request).service
    decision = await asyncio.to_thread(service.check, who.tenant_id, customer, feature, amount)
    deps_of(request).metrics.decisions.labels(decision.reason.value).inc()
    return json_response(decision.as_dict())


@router.post(
    CONSUME_ROUTE,
    summary="Atomically check and record usage",
    responses={
        200: {"model": ConsumeOut, "description": "granted"},
        403: {"model": ConsumeOut, "description": "refused (or the key lacks the scope)"},
        409: {
            "model": ConsumeConflictOut,
            "description": "the event_id is already used by an ingested event (kept as the answer)",
        },
        401: ERRORS[401],
        404: ERRORS[404],
        422: ERRORS[422],
        503: {
            "model": ErrorOut,
            "description": "the granted usage was not acknowledged yet, or another consume of "
            "this event_id is still deciding: retry with the same event_id",
        },
    },
)
async def consume(
    request: Request,
    body: ConsumeIn,
    customer: str = CustomerPath,
    feature: str = FeaturePath,
) -> Response:
    """Grant `amount` of a metered feature if it fits the limit (scope `ingest` or `admin`).

    Under any concurrency the granted total never exceeds a blocking limit. Granted usage enters
    the pipeline as an ordinary usage event whose id is `event_id`, timestamped at the first
    attempt. The same `event_id` again returns the first answer, unchanged (concurrent repeats
    wait for it). `event_id`, the customer and `amount` are checked as ingest checks an event's
    id, customer and value. An id that ingest already used answers 409; after a consume, ingest
    answers an event with its id as a duplicate. A 503 keeps the reservation: retry with the
    same `event_id` (the same event is published again and counted once)."""
    who = principal(request, "ingest", "admin")
    deps = deps_of(request)
    ask = ConsumeAsk(who.tenant_id, customer, feature, body.amount, body.event_id)
    status, answer = await consumed(deps, ask)
    return json_response(answer, status)


async def consumed(deps: Dependencies, ask: ConsumeAsk) -> tuple[int, dict[str, Any]]:
    """The consume's (status, body), decided in a batch (`batching.py`), counted in the
    metrics; raises the consume's error. The route above and the fast path both call it."""
    try:
        status, answer = await deps.consumes().consume(ask)
    except Exception:
        deps.metrics.consumes.labels("failed").inc()
        raise
    deps.metrics.consumes.labels("granted" if status == 200 else "refused").inc()
    if "reason" in answer:
        deps.metrics.decisions.labels(str(answer["reason"])).inc()
    return status, answer
