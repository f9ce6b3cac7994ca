"""The webhook listener: each verified `customer.subscription.*` event becomes a revenue event.

`RevenueListener.on_event(event)` runs after the subscription sync has accepted the event. It
reads the subscription snapshot the event carries (`data.object`, the state at the event's
`created` time: the history, not just the latest state), maps the Stripe customer to the
tenant's customer, and keeps the state once per event id (a redelivery changes nothing). A
subscription of a Stripe customer Meterline does not know (or naming none) is ignored, and so
are events of other types. A snapshot of a known customer that cannot be read raises
`BadSubscription`: the webhook answers 400 and keeps the body, like any unusable event.
"""

from __future__ import annotations

from meterline.entitlements.repository import CustomerRepository
from meterline.revenue.parse import customer_of, subscription_state
from meterline.revenue.store import RevenueEventStore
from meterline.stripe.webhook_events import StripeEvent

STATE_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    }
)


class RevenueListener:
    def __init__(self, customers: CustomerRepository, store: RevenueEventStore) -> None:
        self._customers = customers
        self._store = store

    def on_event(self, event: StripeEvent) -> bool:
        """True when the event added a revenue event. Raises BadSubscription (400) when the
        snapshot cannot be read."""
        if event.type not in STATE_EVENTS:
            return False
        stripe_id = customer_of(event.object)
        customer = None if stripe_id is None else self._customers.by_stripe_id(stripe_id)
        if customer is None:
            return False
        state = subscription_state(event.object, customer.id, event.created)
        return self._store.add(customer.tenant_id, event.id, state)
