"""What Stripe still tells about subscriptions, for `meterline revenue rebuild`.

`subscription_history(client, customers)` lists the `customer.subscription.*` events Stripe
still keeps (Stripe keeps events for 30 days; the emulator keeps all), as `StripeEvent`s in
the order they happened (within a second, Stripe's list order), and the current object of
every subscription of the given Stripe customers (`status=all`, canceled ones included).
Only these customers' events are kept.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import stripe

from meterline.stripe.webhook_events import StripeEvent

JSON = dict[str, Any]
TYPES = [
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
]


def subscription_history(
    client: stripe.StripeClient, customers: Collection[str]
) -> tuple[list[StripeEvent], list[JSON]]:
    """(the customers' subscription events, oldest first; their subscriptions now)."""
    listed = client.v1.events.list({"types": TYPES, "limit": 100})
    events = [_event(e.to_dict()) for e in listed.auto_paging_iter()]
    mine = [e for e in events if _customer(e.object) in customers]
    subs = [
        s.to_dict()
        for customer in sorted(customers)
        for s in client.v1.subscriptions.list(
            {"customer": customer, "status": "all", "limit": 100}
        ).auto_paging_iter()
    ]
    # Stripe lists newest first, also within a second: reversed, the order they happened.
    return sorted(reversed(mine), key=lambda e: e.created), subs


def _event(doc: JSON) -> StripeEvent:
    obj = doc["data"]["object"]
    return StripeEvent(doc["id"], doc["type"], int(doc["created"]), obj, obj.get("id"))


def _customer(obj: JSON) -> Any:
    found = obj.get("customer")
    return found.get("id") if isinstance(found, dict) else found
