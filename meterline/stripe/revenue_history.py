"""What Stripe still tells about subscriptions and invoices, for revenue events.

`subscription_history(client, customers)` lists the `customer.subscription.*` events Stripe
still keeps (Stripe keeps events for 30 days; the emulator keeps all), as `StripeEvent`s in
the order they happened (within a second, Stripe's list order), and the current object of
every subscription of the given Stripe customers (`status=all`, canceled ones included).
Only these customers' events are kept. `invoice_history(client, customers)` lists every
invoice of those customers; `StripeInvoiceLines` reads an invoice's lines and which of them
bill a metered price (`meterline.revenue.invoices.InvoiceLines`), for the rebuild and the
webhook listener alike.
"""

from __future__ import annotations

import threading
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


def invoice_history(client: stripe.StripeClient, customers: Collection[str]) -> list[JSON]:
    """Every invoice of the given Stripe customers, drafts included (the reader skips them)."""
    return [
        i.to_dict()
        for customer in sorted(customers)
        for i in client.v1.invoices.list({"customer": customer, "limit": 100}).auto_paging_iter()
    ]


def price_id(line: JSON) -> str | None:
    """The id of the price an invoice line bills, in either API shape (the older `price`
    object, the newer `pricing.price_details.price`); None when it names none."""
    old = line.get("price")
    if isinstance(old, dict) and isinstance(old.get("id"), str):
        return str(old["id"])
    details = (line.get("pricing") or {}).get("price_details") or {}
    found = details.get("price")
    if isinstance(found, dict):
        found = found.get("id")
    return found if isinstance(found, str) else None


class StripeInvoiceLines:
    """An invoice's lines (all of them, when the object holds only the first page) and whether
    a line's price is metered: from the line's own `price` object when it carries one, else
    the price fetched from Stripe once per price id (a price's usage type never changes)."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client
        self._metered: dict[str, bool] = {}
        self._lock = threading.Lock()

    def lines(self, invoice: JSON) -> list[JSON]:
        first = invoice.get("lines") or {}
        if not first.get("has_more"):
            return list(first.get("data") or [])
        listed = self._client.v1.invoices.line_items.list(invoice["id"], {"limit": 100})
        return [line.to_dict() for line in listed.auto_paging_iter()]

    def is_metered(self, line: JSON) -> bool:
        recurring = (line.get("price") or {}).get("recurring")
        if isinstance(recurring, dict):
            return recurring.get("usage_type") == "metered"
        found = price_id(line)
        return found is not None and self._price_is_metered(found)

    def _price_is_metered(self, price: str) -> bool:
        with self._lock:
            known = self._metered.get(price)
        if known is None:
            recurring = self._client.v1.prices.retrieve(price).to_dict().get("recurring") or {}
            known = recurring.get("usage_type") == "metered"
            with self._lock:
                self._metered[price] = known
        return known
