"""Subscriptions from Stripe: webhook events in, the customer's plan, status and period out.

`SubscriptionSync.handle(event)` takes a verified webhook event (a `StripeEvent` from
`webhook_events.parse_event`) and:
1. stores its id once (`stripe_webhook_events`, ON CONFLICT DO NOTHING); an id already
   processed is a duplicate and changes nothing;
2. for subscription and invoice events, re-fetches the subscription from Stripe and writes its
   current state: delivery order never matters, a late `created` after an `updated` still ends
   in the newest state;
3. calls `on_change(tenant_id, customer)` so cached decisions are dropped;
4. marks the event processed. An event whose processing failed stays unprocessed, the webhook
   answers 5xx, and Stripe's retry processes it again. A subscription whose period ends before
   it starts is refused (`InvalidWebhook`, 400): nothing is written, the refusal is kept
   (`reject`), and a retry fetches the subscription again.

The plan is the catalog plan whose synced price a subscription item uses: the price's
`metadata.meterline_plan`, else its row in `stripe_objects`. `past_due_since` (grace starts
there) is the earliest `created` among the events that show the subscription past due (an
`invoice.payment_failed`, or a subscription event whose own snapshot is past due), else the
`created` time of the subscription's latest invoice: always Stripe's times, never a local guess.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import stripe

from meterline.clock import Clock, SystemClock
from meterline.entitlements.model import SUBSCRIPTION_STATUSES, Customer, Subscription
from meterline.entitlements.repository import CustomerRepository, SubscriptionRepository
from meterline.errors import NotFound
from meterline.stripe.catalog_sync import StripeObjectRepository
from meterline.stripe.webhook_events import (
    InvalidWebhook,
    RejectedWebhook,
    StripeEvent,
    WebhookEventStore,
    event_id_of,
)

JSON = dict[str, Any]


def ensure_stripe_customer(
    client: stripe.StripeClient, customers: CustomerRepository, tenant_id: int, customer: str
) -> str:
    """The customer's Stripe id, creating the Stripe customer on first need.

    The create carries an Idempotency-Key derived from (tenant, customer) by a hash (a header
    holds latin-1 only, a customer id any printable text), so concurrent or retried calls make
    one Stripe customer. Raises NotFound for an unknown customer.
    """
    found = customers.get(tenant_id, customer)
    if found is None:
        raise NotFound(f"no customer {customer!r}")
    if found.stripe_customer_id:
        return found.stripe_customer_id
    params: dict[str, Any] = {
        "metadata": {"meterline_tenant": str(tenant_id), "meterline_customer": customer},
    }
    if found.name:
        params["name"] = found.name
    if found.email:
        params["email"] = found.email
    digest = hashlib.sha256(customer.encode()).hexdigest()
    key = f"meterline-customer-{tenant_id}-{digest}"
    created = client.v1.customers.create(params, {"idempotency_key": key})  # type: ignore[arg-type]
    customers.set_stripe_id(tenant_id, customer, created.id)
    return str(created.id)


class SubscriptionSync:
    """Applies Stripe events to the `subscriptions` table (see the module docstring)."""

    def __init__(
        self,
        client: stripe.StripeClient,
        customers: CustomerRepository,
        subscriptions: SubscriptionRepository,
        objects: StripeObjectRepository,
        events: WebhookEventStore,
        on_change: Callable[[int, str], None] = lambda _t, _c: None,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._client = client
        self._customers = customers
        self._subs = subscriptions
        self._objects = objects
        self._events = events
        self._on_change = on_change
        self._lock = threading.Lock()

    def handle(self, event: StripeEvent) -> str:
        """Process one verified event; returns `duplicate`, `ignored` or `applied`.

        Raises InvalidWebhook when the subscription's data breaks a rule (the event stays
        unprocessed: Stripe's retry fetches the subscription again), StripeError when Stripe
        cannot be reached."""
        if not self._events.record(event.id, event.type, event.created):
            return "duplicate"
        outcome = "ignored"
        if event.subscription_id is not None:
            failed_at = event.created if event.shows_past_due else None
            with self._lock:
                synced = self.sync(event.subscription_id, event.created, failed_at)
                outcome = "applied" if synced else "ignored"
        self._events.processed(event.id)
        return outcome

    def reject(self, payload: bytes, error: InvalidWebhook) -> None:
        """Keep a refused body with the reason, for inspection."""
        self._events.reject(payload, event_id_of(payload), error.message)

    def rejected(self, limit: int = 100) -> list[RejectedWebhook]:
        return self._events.rejected(limit)

    def sync(
        self, subscription_id: str, event_created: int = 0, failed_at: int | None = None
    ) -> Subscription | None:
        """Fetch the subscription and store its current state; None if it is not ours.

        `failed_at`: when the triggering event shows the subscription past due (Unix seconds).
        """
        try:
            obj = self._client.v1.subscriptions.retrieve(subscription_id).to_dict()
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise
        customer = self._customers.by_stripe_id(_id(obj["customer"]))
        if customer is None:
            return None
        plan = self._plan(customer.tenant_id, obj)
        if plan is None:
            return None
        sub = to_subscription(obj, customer, plan, self._subs.get(customer.tenant_id, customer.id))
        seen = failed_at
        if sub.status == "past_due" and seen is None:
            seen = self._invoice_created(obj.get("latest_invoice"))
        if seen is None:
            seen = self._clock.now_ms() // 1000
        sub = _stamp(sub, event_created, seen)
        self._subs.put(sub)
        self._on_change(customer.tenant_id, customer.id)
        return sub

    def _invoice_created(self, invoice: Any) -> int | None:
        if not invoice:
            return None
        return int(self._client.v1.invoices.retrieve(_id(invoice)).created)

    def _plan(self, tenant_id: int, obj: JSON) -> str | None:
        items = obj.get("items", {}).get("data", [])
        for item in sorted(items, key=_is_metered):
            price = item["price"]
            plan = (price.get("metadata") or {}).get("meterline_plan")
            if plan:
                return str(plan)
            found = self._objects.by_stripe_id(price["id"])
            if found is not None and found[0] == tenant_id:
                return found[1].key.split("/")[0]
        return None


def to_subscription(
    obj: JSON, customer: Customer, plan: str, existing: Subscription | None
) -> Subscription:
    """The stored form of a Stripe subscription object (periods from its first item).

    Raises InvalidWebhook when the period ends before it starts."""
    items = obj.get("items", {}).get("data", [])
    first = items[0] if items else {}
    status = obj["status"] if obj["status"] in SUBSCRIPTION_STATUSES else "incomplete"
    past_due_since = None
    if status == "past_due" and existing is not None and existing.status == "past_due":
        past_due_since = existing.past_due_since
    start, end = _time(first.get("current_period_start")), _time(first.get("current_period_end"))
    if start is not None and end is not None and end <= start:
        raise InvalidWebhook(
            f"subscription {obj['id']}: its period ends ({end:%Y-%m-%dT%H:%M:%SZ}) "
            f"before it starts ({start:%Y-%m-%dT%H:%M:%SZ}); not applied"
        )
    return Subscription(
        tenant_id=customer.tenant_id,
        customer=customer.id,
        plan=plan,
        status=status,
        source="stripe",
        stripe_subscription_id=obj["id"],
        current_period_start=start,
        current_period_end=end,
        past_due_since=past_due_since,
        cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
        stripe_event_created=existing.stripe_event_created if existing else None,
    )


def _stamp(sub: Subscription, event_created: int, past_due_seen: int) -> Subscription:
    newest = max(sub.stripe_event_created or 0, event_created) or None
    since = sub.past_due_since
    if sub.status == "past_due":
        seen = datetime.fromtimestamp(past_due_seen, UTC)
        since = seen if since is None else min(since, seen)
    return replace(sub, stripe_event_created=newest, past_due_since=since)


def _id(value: Any) -> str:
    return str(value["id"] if isinstance(value, dict) else value)


def _time(seconds: Any) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(int(seconds), UTC)


def _is_metered(item: JSON) -> bool:
    return bool((item["price"].get("recurring") or {}).get("usage_type") == "metered")
