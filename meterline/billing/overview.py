"""Everything a billing dashboard shows, in one answer: `BillingOverview.get`.

The plan that applies now and the subscription's status, period, `cancel_at_period_end` and
pending change; each metered feature's usage against its limit (the entitlement decisions, so
grants and payment policies count); the upcoming invoice (Stripe's preview: the next period's
base price and the metered cost so far, which is the sum of its metered lines); recent invoices
with their hosted links; the default card's brand and last 4 digits; the dunning sequence of
an unpaid invoice, when one is open (`meterline.dunning.notices.state`). Without a Stripe
customer the Stripe parts are empty rather than created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from meterline.billing.plan_change import PlanChanges
from meterline.entitlements import CustomerRepository, Decision, SubscriptionRepository
from meterline.errors import NotFound
from meterline.stripe.catalog_sync import StripeObjectRepository
from meterline.stripe.plan_changes import StripePlanChanges
from meterline.stripe.self_service import StripeSelfService

JSON = dict[str, Any]
RECENT_INVOICES = 10


class BillingOverview:
    def __init__(
        self,
        decisions: Callable[[int, str], list[Decision]],
        customers: CustomerRepository,
        subscriptions: SubscriptionRepository,
        objects: StripeObjectRepository,
        plans: PlanChanges,
        invoices: StripePlanChanges,
        cards: StripeSelfService,
        dunning: Callable[[int, str], JSON | None] = lambda _t, _c: None,
    ) -> None:
        self._decisions = decisions
        self._customers = customers
        self._subs = subscriptions
        self._objects = objects
        self._plans = plans
        self._invoices = invoices
        self._cards = cards
        self._dunning = dunning

    def get(self, tenant_id: int, customer: str) -> JSON:
        """Raises NotFound for an unknown customer."""
        found = self._customers.get(tenant_id, customer)
        if found is None:
            raise NotFound(f"no customer {customer!r}")
        decisions = self._decisions(tenant_id, customer)
        sub = self._subs.get(tenant_id, customer)
        stripe_sub = sub.stripe_subscription_id if sub and sub.status != "canceled" else None
        return {
            "customer": customer,
            "plan": decisions[0].plan if decisions else (sub.plan if sub else None),
            "subscription": _subscription(sub),
            "pending_change": self._pending(tenant_id, customer, stripe_sub),
            "features": [_usage(d) for d in decisions if d.kind == "metered"],
            "upcoming_invoice": self._upcoming(tenant_id, stripe_sub),
            "invoices": self._recent(found.stripe_customer_id),
            "default_payment_method": self._default_card(found.stripe_customer_id),
            "dunning": self._dunning(tenant_id, customer),
        }

    def _pending(self, tenant_id: int, customer: str, stripe_sub: str | None) -> JSON | None:
        if stripe_sub is None:
            return None
        pending = self._plans.pending(tenant_id, customer)
        return None if pending is None else asdict(pending)

    def _upcoming(self, tenant_id: int, stripe_sub: str | None) -> JSON | None:
        if stripe_sub is None:
            return None
        preview = self._invoices.upcoming(stripe_sub)
        metered = {o.stripe_id for o in self._objects.all(tenant_id) if o.kind == "metered_price"}
        return {
            "amount_due": preview.amount_due,
            "currency": preview.currency,
            "date": preview.next_payment_attempt,
            "metered_so_far": sum(line.amount for line in preview.lines if line.price in metered),
            "lines": [asdict(line) for line in preview.lines],
        }

    def _recent(self, stripe_customer: str | None) -> list[JSON]:
        if not stripe_customer:
            return []
        return [asdict(i) for i in self._invoices.recent_invoices(stripe_customer, RECENT_INVOICES)]

    def _default_card(self, stripe_customer: str | None) -> JSON | None:
        if not stripe_customer:
            return None
        card = next((c for c in self._cards.cards(stripe_customer) if c.default), None)
        return None if card is None else {"id": card.id, "brand": card.brand, "last4": card.last4}


def _subscription(sub: Any) -> JSON | None:
    if sub is None:
        return None
    state = sub.as_dict()
    keys = ("plan", "status", "current_period_start", "current_period_end", "cancel_at_period_end")
    return {k: state[k] for k in keys}


def _usage(d: Decision) -> JSON:
    doc = d.as_dict()
    keys = ("feature", "used", "limit", "remaining", "overage", "period", "has_access")
    return {k: doc[k] for k in keys}
