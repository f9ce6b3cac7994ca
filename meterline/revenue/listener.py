"""The webhook listener: each verified `customer.subscription.*` event becomes a revenue event,
and each closed invoice (`invoice.finalized|paid|voided|marked_uncollectible`) a metered one.

`RevenueListener.on_event(event)` runs after the subscription sync has accepted the event. It
reads the subscription snapshot the event carries (`data.object`, the state at the event's
`created` time: the history, not just the latest state), maps the Stripe customer to the
tenant's customer, and keeps the state once per event id (a redelivery changes nothing). A
subscription of a Stripe customer Meterline does not know (or naming none) is ignored, and so
are events of other types. A snapshot of a known customer that cannot be read raises
`BadSubscription`: the webhook answers 400 and keeps the body, like any unusable event.

An invoice event's object is the invoice as it closed: its lines no longer change, so it is
read as delivered (all its lines fetched when the object holds only the first page), and kept
once per invoice with the status furthest along (`meterline/revenue/invoices.py`): delivery
order does not matter. Without an `InvoiceLines` (no Stripe client) invoices are ignored.
"""

from __future__ import annotations

from meterline.entitlements.repository import CustomerRepository
from meterline.revenue.invoices import InvoiceLines, metered_invoice
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


INVOICE_EVENTS = frozenset(
    {
        "invoice.finalized",
        "invoice.paid",
        "invoice.voided",
        "invoice.marked_uncollectible",
    }
)


class RevenueListener:
    def __init__(
        self,
        customers: CustomerRepository,
        store: RevenueEventStore,
        lines: InvoiceLines | None = None,
    ) -> None:
        self._customers = customers
        self._store = store
        self._lines = lines

    def on_event(self, event: StripeEvent) -> bool:
        """True when the event added or changed a revenue event. Raises BadSubscription or
        BadInvoice (400) when the object cannot be read, StripeError (503) when an invoice's
        lines or prices cannot be fetched."""
        if event.type not in STATE_EVENTS and event.type not in INVOICE_EVENTS:
            return False
        stripe_id = customer_of(event.object)
        customer = None if stripe_id is None else self._customers.by_stripe_id(stripe_id)
        if customer is None:
            return False
        if event.type in INVOICE_EVENTS:
            return self._on_invoice(event, customer.tenant_id, customer.id)
        state = subscription_state(event.object, customer.id, event.created)
        return self._store.add(customer.tenant_id, event.id, state)

    def _on_invoice(self, event: StripeEvent, tenant_id: int, customer: str) -> bool:
        if self._lines is None:
            return False
        found = metered_invoice(event.object, customer, self._lines)
        return found is not None and self._store.add_invoice(tenant_id, found)
