"""Seats: the quantity of the subscription's base (licensed) item, for plans with a `seats`
feature. More seats apply at once with a prorated charge invoiced now; fewer apply at once with
a prorated credit on the next invoice. Never below the seats in use: the app reports them with
each change (it knows them at that instant; a usage meter would lag behind the pipeline and
could allow removing seats that are taken), and a change below them is a 409 saying both
numbers. A preview prices the change as of its `proration_date`, like a plan change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meterline.billing.plan_change import proration_date
from meterline.catalog import Catalog
from meterline.clock import Clock
from meterline.entitlements import SubscriptionRepository
from meterline.errors import Conflict
from meterline.stripe.plan_changes import (
    InvoicePreview,
    InvoiceSummary,
    ItemChange,
    StripePlanChanges,
)

JSON = dict[str, Any]
SEATS_FEATURE = "seats"


@dataclass(frozen=True, slots=True)
class SeatsPreview:
    seats: int
    current: int
    proration_date: int
    due_today: InvoicePreview | None
    next_invoice: InvoicePreview


@dataclass(frozen=True, slots=True)
class SeatsChange:
    seats: int
    previous: int
    invoice: InvoiceSummary | None


class Seats:
    def __init__(
        self,
        catalog_of: Callable[[int], Catalog],
        subscriptions: SubscriptionRepository,
        stripe: StripePlanChanges,
        sync_subscription: Callable[[str], object],
        clock: Clock,
    ) -> None:
        self._catalog_of = catalog_of
        self._subs = subscriptions
        self._stripe = stripe
        self._sync = sync_subscription
        self._clock = clock

    def current(self, tenant_id: int, customer: str) -> int:
        _, item = self._seat_item(tenant_id, customer)
        return int(item.get("quantity") or 1)

    def preview(
        self, tenant_id: int, customer: str, seats: int, in_use: int, at: int | None = None
    ) -> SeatsPreview:
        sub, item = self._checked(tenant_id, customer, seats, in_use)
        when = self._at(sub, at)
        change = [ItemChange(item["id"], item["price"]["id"], seats)]
        more = seats > int(item.get("quantity") or 1)
        due = self._stripe.preview(sub["id"], change, "always_invoice", when) if more else None
        following = self._stripe.preview(sub["id"], change, "create_prorations", when)
        return SeatsPreview(seats, int(item.get("quantity") or 1), when, due, following)

    def change(
        self, tenant_id: int, customer: str, seats: int, in_use: int, at: int | None = None
    ) -> SeatsChange:
        """409 below `in_use` or without a subscription to a plan with seats; 422 naming
        `proration_date` outside the current period."""
        sub, item = self._checked(tenant_id, customer, seats, in_use)
        when = self._at(sub, at)
        previous = int(item.get("quantity") or 1)
        behavior = "always_invoice" if seats > previous else "create_prorations"
        change = [ItemChange(item["id"], item["price"]["id"], seats)]
        invoice_id = self._stripe.update_items(sub["id"], change, behavior, when)
        self._sync(sub["id"])
        invoice = None
        if behavior == "always_invoice" and invoice_id:
            invoice = self._stripe.invoice(invoice_id)
        return SeatsChange(seats, previous, invoice)

    def _checked(self, tenant_id: int, customer: str, seats: int, in_use: int) -> tuple[JSON, JSON]:
        if seats < in_use:
            raise Conflict(f"{seats} seats is below the {in_use} seats in use; free seats first")
        return self._seat_item(tenant_id, customer)

    def _seat_item(self, tenant_id: int, customer: str) -> tuple[JSON, JSON]:
        stored = self._subs.get(tenant_id, customer)
        if stored is None or not stored.stripe_subscription_id or stored.status == "canceled":
            raise Conflict(f"customer {customer} has no Stripe subscription; start a checkout")
        plan = self._catalog_of(tenant_id).plan(stored.plan)
        if plan is None or SEATS_FEATURE not in plan.features:
            raise Conflict(f"plan {stored.plan} has no {SEATS_FEATURE} feature")
        sub = self._stripe.subscription(stored.stripe_subscription_id)
        licensed = [
            i for i in sub["items"]["data"] if i["price"]["recurring"]["usage_type"] == "licensed"
        ]
        if not licensed:
            raise Conflict(f"plan {stored.plan} has no per-seat base price")
        return sub, licensed[0]

    def _at(self, sub: JSON, given: int | None) -> int:
        return proration_date(sub, given, self._clock)
