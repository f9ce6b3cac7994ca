"""A subscriber's own billing: cancel at period end and resume, the customer portal link, and
payment methods. Every call is for the tenant's customer: a payment method of another
customer is answered as unknown (404), never touched.
"""

from __future__ import annotations

from collections.abc import Callable

from meterline.entitlements import Subscription, SubscriptionRepository
from meterline.errors import Conflict, NotFound
from meterline.stripe.self_service import Card, SetupIntent, StripeSelfService


class BillingAccount:
    def __init__(
        self,
        subscriptions: SubscriptionRepository,
        stripe_customer: Callable[[int, str], str],
        stripe: StripeSelfService,
        sync_subscription: Callable[[str], Subscription | None],
    ) -> None:
        self._subs = subscriptions
        self._stripe_customer = stripe_customer
        self._stripe = stripe
        self._sync = sync_subscription

    def cancel(self, tenant_id: int, customer: str, cancel: bool = True) -> Subscription:
        """Cancel at the period end (or, `cancel=False`, resume); the stored subscription
        after the change. Conflict (409) without a live Stripe subscription."""
        stored = self._subs.get(tenant_id, customer)
        if stored is None or not stored.stripe_subscription_id or stored.status == "canceled":
            raise Conflict(f"customer {customer} has no live Stripe subscription")
        self._stripe.set_cancel_at_period_end(stored.stripe_subscription_id, cancel)
        synced = self._sync(stored.stripe_subscription_id)
        return synced or stored

    def portal_url(self, tenant_id: int, customer: str, return_url: str) -> str:
        return self._stripe.portal_url(self._stripe_customer(tenant_id, customer), return_url)

    def setup_intent(self, tenant_id: int, customer: str) -> SetupIntent:
        return self._stripe.setup_intent(self._stripe_customer(tenant_id, customer))

    def cards(self, tenant_id: int, customer: str) -> list[Card]:
        return self._stripe.cards(self._stripe_customer(tenant_id, customer))

    def set_default(self, tenant_id: int, customer: str, method: str) -> None:
        self._stripe.set_default(self._own(tenant_id, customer, method), method)

    def detach(self, tenant_id: int, customer: str, method: str) -> None:
        self._own(tenant_id, customer, method)
        self._stripe.detach(method)

    def _own(self, tenant_id: int, customer: str, method: str) -> str:
        stripe_id = self._stripe_customer(tenant_id, customer)
        if self._stripe.owner(method) != stripe_id:
            raise NotFound(f"customer {customer} has no payment method {method!r}")
        return stripe_id
