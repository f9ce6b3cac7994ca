"""`POST /v1/stripe/webhook`: verified Stripe events update subscriptions.

The signature is checked with `stripe.Webhook.construct_event` (tolerance 300 s by default): a
bad signature or a stale timestamp is a 400 and changes nothing. Each event id is stored once;
a redelivery answers 200 and does nothing. The subscription is re-fetched from Stripe, so
events may arrive in any order. A failure while processing answers 503 so Stripe retries.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import stripe
from fastapi import APIRouter, Request
from starlette.responses import Response

from entitlements_api.access import deps_of
from entitlements_api.responses import json_response
from entitlements_api.schemas import ErrorOut

router = APIRouter(tags=["stripe"])
log = logging.getLogger("entitlements_api.webhook")


@router.post(
    "/v1/stripe/webhook",
    summary="Stripe webhook endpoint",
    responses={400: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
async def stripe_webhook(request: Request) -> Response:
    """Handles customer.subscription.created|updated|deleted|paused|resumed, invoice.paid and
    invoice.payment_failed; other event types are acknowledged and ignored."""
    deps = deps_of(request)
    payload = await request.body()
    header = request.headers.get("stripe-signature")
    try:
        stripe.Webhook.construct_event(
            payload, header, deps.webhook_secret, tolerance=deps.webhook_tolerance_s
        )
        event = orjson.loads(payload)
        event_id, event_type = str(event["id"]), str(event["type"])
    except (ValueError, KeyError, TypeError, stripe.SignatureVerificationError) as exc:
        deps.metrics.webhooks.labels("rejected").inc()
        return json_response({"error": "invalid_webhook", "message": _why(exc)}, 400)
    try:
        outcome = await asyncio.to_thread(deps.subscription_sync.handle, event)
    except stripe.StripeError as exc:
        deps.metrics.webhooks.labels("failed").inc()
        log.warning("webhook processing failed", extra={"event_id": event_id, "error": str(exc)})
        body = {"error": "unavailable", "message": "Stripe could not be reached; retry"}
        return json_response(body, 503, {"Retry-After": "5"})
    deps.metrics.webhooks.labels(outcome).inc()
    return json_response({"received": event_id, "type": event_type, "outcome": outcome})


def _why(exc: Exception) -> str:
    if isinstance(exc, stripe.SignatureVerificationError):
        return f"signature verification failed: {exc.user_message or exc}"
    return "the body is not a Stripe event"
