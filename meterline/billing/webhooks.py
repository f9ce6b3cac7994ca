"""Stripe webhook events for billing, wrapped around the subscription sync.

`BillingWebhooks.handle(event)` fulfils a `checkout.session.completed` (once per session, see
`BillingCheckout.fulfil`) and then hands the event to the wrapped handler (`SubscriptionSync`),
which stores the event id and syncs subscriptions as before. Fulfilment comes first: when it
fails (Stripe unreachable) nothing is marked processed, the webhook answers 5xx, and Stripe's
retry fulfils it; when the event id was already processed, fulfilment is still idempotent.
"""

from __future__ import annotations

from typing import Protocol

from meterline.billing.checkout import BillingCheckout
from meterline.stripe.webhook_events import StripeEvent

FULFILLED_EVENTS = frozenset(
    {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
)


class EventHandler(Protocol):
    def handle(self, event: StripeEvent) -> str: ...


class BillingWebhooks:
    def __init__(self, checkout: BillingCheckout, inner: EventHandler) -> None:
        self._checkout = checkout
        self._inner = inner

    def handle(self, event: StripeEvent) -> str:
        """The wrapped handler's outcome, `fulfilled` when this delivery fulfilled a session."""
        fulfilled = False
        if event.type in FULFILLED_EVENTS and isinstance(event.object.get("id"), str):
            fulfilled = self._checkout.fulfil(event.object["id"]) == "fulfilled"
        outcome = self._inner.handle(event)
        return "fulfilled" if fulfilled else outcome
