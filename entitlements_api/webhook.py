"""`POST /v1/stripe/webhook`: verified Stripe events update subscriptions.

The signature is checked first (`meterline.stripe.signature_problem`, tolerance 300 s by
default): a bad signature or a stale timestamp is a 400 and changes nothing, not even a record.
The verified body is then parsed by `meterline.stripe.parse_event` (orjson: nesting deeper
than 1,024 levels is refused without recursing). A signed body that is not a usable event (not
an object, no `data.object`, a subscription event without an id, ...) or that names a
subscription whose period ends before it starts answers 400 `invalid_webhook` with the reason,
and is kept in `stripe_webhook_rejects` (hash, reason, first 64 KiB, attempts) for inspection.
Each event id is stored once; a redelivery answers 200 and does nothing. The subscription is
re-fetched from Stripe, so events may arrive in any order. When Stripe cannot be reached the
answer is 503 so Stripe retries. Without a webhook secret (allowed only against the emulator,
see `meterline.settings`) every delivery answers 404.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from starlette.responses import Response

from entitlements_api.access import deps_of
from entitlements_api.responses import json_response
from entitlements_api.schemas import ErrorOut
from entitlements_api.wiring import Dependencies
from meterline.errors import NotFound
from meterline.stripe import InvalidWebhook, StripeError, parse_event, signature_problem

router = APIRouter(tags=["stripe"])
log = logging.getLogger("entitlements_api.webhook")


@router.post(
    "/v1/stripe/webhook",
    summary="Stripe webhook endpoint",
    responses={400: {"model": ErrorOut}, 404: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
async def stripe_webhook(request: Request) -> Response:
    """Handles customer.subscription.created|updated|deleted|paused|resumed, invoice.paid,
    invoice.payment_failed (subscriptions, then dunning) and checkout.session.completed
    (billing fulfilment); other event types are acknowledged and ignored."""
    deps = deps_of(request)
    payload = await request.body()
    problem = _verify(deps, payload, request.headers.get("stripe-signature"))
    if problem is not None:
        deps.metrics.webhooks.labels("rejected").inc()
        return json_response({"error": "invalid_webhook", "message": problem}, 400)
    try:
        event = parse_event(payload)
        outcome = await asyncio.to_thread(deps.webhook_handler().handle, event)
        if deps.revenue is not None:  # the state it shows, kept as a revenue event
            await asyncio.to_thread(deps.revenue.on_event, event)
    except InvalidWebhook as exc:
        deps.metrics.webhooks.labels("rejected").inc()
        await asyncio.to_thread(deps.subscription_sync.reject, payload, exc)
        return json_response(exc.body(), exc.status)
    except StripeError as exc:
        deps.metrics.webhooks.labels("failed").inc()
        log.warning("webhook processing failed", extra={"event_id": event.id, "error": str(exc)})
        body = {"error": "unavailable", "message": "Stripe could not be reached; retry"}
        return json_response(body, 503, {"Retry-After": "5"})
    deps.metrics.webhooks.labels(outcome).inc()
    return json_response({"received": event.id, "type": event.type, "outcome": outcome})


def _verify(deps: Dependencies, payload: bytes, header: str | None) -> str | None:
    """Why the signature does not hold, or None when it does; raises NotFound without a secret."""
    if not deps.webhook_secret:
        raise NotFound("Stripe webhooks are not configured (METERLINE_STRIPE_WEBHOOK_SECRET)")
    return signature_problem(payload, header, deps.webhook_secret, deps.webhook_tolerance_s)
