"""Stripe webhook events for billing, wrapped around the subscription sync.

`BillingWebhooks.handle(event)` fulfils a `checkout.session.completed` (once per session, see
`BillingCheckout.fulfil`) and then hands the event to the wrapped handler (`SubscriptionSync`),
which stores the event id and syncs subscriptions as before. Fulfilment comes first: when it
fails (Stripe unreachable) nothing is marked processed, the webhook answers 5xx, and Stripe's
retry fulfils it; when the event id was already processed, fulfilment is still idempotent.
With a `PlanWatch`, a plan change the event stored (a downgrade at the period end, say) is
handed to the catalog's over-limit policy (`over_limit.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from meterline.billing.checkout import BillingCheckout
from meterline.billing.over_limit import OverLimitPolicy
from meterline.entitlements import CustomerRepository, SubscriptionRepository
from meterline.entitlements.model import ACTIVE_STATUSES
from meterline.stripe.webhook_events import StripeEvent

FULFILLED_EVENTS = frozenset(
    {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
)


class EventHandler(Protocol):
    def handle(self, event: StripeEvent) -> str: ...


@dataclass(frozen=True, slots=True)
class PlanWatch:
    """What notices a plan change the wrapped handler stored, for the over-limit policy."""

    customers: CustomerRepository
    subscriptions: SubscriptionRepository
    over_limit: OverLimitPolicy


class BillingWebhooks:
    def __init__(
        self, checkout: BillingCheckout, inner: EventHandler, watch: PlanWatch | None = None
    ) -> None:
        self._checkout = checkout
        self._inner = inner
        self._watch = watch

    def handle(self, event: StripeEvent) -> str:
        """The wrapped handler's outcome, `fulfilled` when this delivery fulfilled a session."""
        fulfilled = False
        if event.type in FULFILLED_EVENTS and isinstance(event.object.get("id"), str):
            fulfilled = self._checkout.fulfil(event.object["id"]) == "fulfilled"
        before = self._stored_plan(event)
        outcome = self._inner.handle(event)
        if before is not None:
            self._after(*before)
        return "fulfilled" if fulfilled else outcome

    def _stored_plan(self, event: StripeEvent) -> tuple[int, str, str] | None:
        customer = event.object.get("customer")
        if self._watch is None or event.subscription_id is None or not isinstance(customer, str):
            return None
        found = self._watch.customers.by_stripe_id(customer)
        sub = found and self._watch.subscriptions.get(found.tenant_id, found.id)
        return None if not found or not sub else (found.tenant_id, found.id, sub.plan)

    def _after(self, tenant_id: int, customer: str, old: str) -> None:
        assert self._watch is not None
        sub = self._watch.subscriptions.get(tenant_id, customer)
        if sub is not None and sub.plan != old and sub.status in ACTIVE_STATUSES:
            self._watch.over_limit.plan_changed(tenant_id, customer, old, sub.plan)
