"""Plan changes: a preview, then an upgrade now (prorated, invoiced at once) or a downgrade at
the period end (a Stripe Subscription Schedule; pending until then).

An upgrade is a change to a plan whose base price is higher (same currency); anything else is
a downgrade. The preview prices the change as of `proration_date` (now, unless given); passing
the preview's `proration_date` to `change` makes the invoice equal the preview to the cent.
The items of the new plan: the base (licensed) item takes the new base price, metered items of
prices the new plan lacks are removed, metered prices it adds are added.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meterline.catalog import Catalog, Plan
from meterline.clock import Clock
from meterline.entitlements import SubscriptionRepository
from meterline.errors import Conflict, FieldError, ValidationFailed
from meterline.stripe.catalog_sync import StripeObjectRepository
from meterline.stripe.plan_changes import (
    InvoicePreview,
    InvoiceSummary,
    ItemChange,
    StripePlanChanges,
)

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChangePreview:
    plan: str
    direction: str  # upgrade | downgrade
    proration_date: int
    due_today: InvoicePreview | None
    next_invoice: InvoicePreview
    effective_at: int  # now for an upgrade, the period end for a downgrade


@dataclass(frozen=True, slots=True)
class ChangeResult:
    plan: str
    direction: str
    effective_at: int
    invoice: InvoiceSummary | None


@dataclass(frozen=True, slots=True)
class PendingChange:
    plan: str
    effective_at: int


class PlanChanges:
    def __init__(
        self,
        catalog_of: Callable[[int], Catalog],
        subscriptions: SubscriptionRepository,
        objects: StripeObjectRepository,
        stripe: StripePlanChanges,
        sync_subscription: Callable[[str], object],
        clock: Clock,
    ) -> None:
        self._catalog_of = catalog_of
        self._subs = subscriptions
        self._objects = objects
        self._stripe = stripe
        self._sync = sync_subscription
        self._clock = clock

    def preview(
        self, tenant_id: int, customer: str, plan: str, proration_date: int | None = None
    ) -> ChangePreview:
        """Raises ValidationFailed naming `plan` or `proration_date`, Conflict (409) without a
        live Stripe subscription or when the plan is the current one."""
        target, sub, current = self._prepare(tenant_id, customer, plan)
        at = self._proration_date(sub, proration_date)
        changes = self._changes(tenant_id, sub, target)
        upgrade = _is_upgrade(current, target)
        due = self._stripe.preview(sub["id"], changes, "always_invoice", at) if upgrade else None
        following = self._stripe.preview(sub["id"], changes, "none", at)
        effective = at if upgrade else _period_end(sub)
        direction = "upgrade" if upgrade else "downgrade"
        return ChangePreview(plan, direction, at, due, following, effective)

    def change(
        self, tenant_id: int, customer: str, plan: str, proration_date: int | None = None
    ) -> ChangeResult:
        """An upgrade now (the prorations invoiced at once, the plan synced before answering)
        or a downgrade scheduled for the period end. Same errors as `preview`."""
        target, sub, current = self._prepare(tenant_id, customer, plan)
        at = self._proration_date(sub, proration_date)
        if not _is_upgrade(current, target):
            self._stripe.schedule_change(sub, self._target_items(tenant_id, sub, target))
            return ChangeResult(plan, "downgrade", _period_end(sub), None)
        self._stripe.release(sub)
        invoice_id = self._stripe.upgrade(sub["id"], self._changes(tenant_id, sub, target), at)
        self._sync(sub["id"])
        invoice = self._stripe.invoice(invoice_id) if invoice_id else None
        return ChangeResult(plan, "upgrade", at, invoice)

    def pending(self, tenant_id: int, customer: str) -> PendingChange | None:
        """The change scheduled for the period end, if any."""
        stored = self._subs.get(tenant_id, customer)
        if stored is None or not stored.stripe_subscription_id:
            return None
        found = self._stripe.scheduled(self._stripe.subscription(stored.stripe_subscription_id))
        if found is None:
            return None
        when, prices = found
        plan = self._plan_of(tenant_id, prices)
        return None if plan is None else PendingChange(plan, when)

    def cancel_pending(self, tenant_id: int, customer: str) -> None:
        stored = self._subs.get(tenant_id, customer)
        if stored is not None and stored.stripe_subscription_id:
            self._stripe.release(self._stripe.subscription(stored.stripe_subscription_id))

    def _prepare(self, tenant_id: int, customer: str, key: str) -> tuple[Plan, JSON, Plan]:
        catalog = self._catalog_of(tenant_id)
        target = catalog.plan(key)
        priced = [p.key for p in catalog.plans if p.price is not None]
        if target is None or target.price is None:
            raise ValidationFailed(
                [FieldError("plan", f"not a priced plan; priced: {', '.join(priced)}")]
            )
        stored = self._subs.get(tenant_id, customer)
        if stored is None or not stored.stripe_subscription_id or stored.status == "canceled":
            raise Conflict(f"customer {customer} has no Stripe subscription; start a checkout")
        current = catalog.plan(stored.plan)
        if current is None or current.key == target.key:
            raise Conflict(f"customer {customer} is already on {stored.plan}")
        return target, self._stripe.subscription(stored.stripe_subscription_id), current

    def _proration_date(self, sub: JSON, given: int | None) -> int:
        return proration_date(sub, given, self._clock)

    def _prices(self, tenant_id: int, target: Plan) -> tuple[str, set[str]]:
        """The plan's base price id and its metered price ids in Stripe."""
        base = self._objects.get(tenant_id, "price", target.key)
        metered = {
            found.stripe_id
            for meter in target.metered_prices
            if (found := self._objects.get(tenant_id, "metered_price", f"{target.key}/{meter}"))
        }
        if base is None:
            raise Conflict(f"plan {target.key} is not synced to Stripe yet; apply the catalog")
        return base.stripe_id, metered

    def _target_items(self, tenant_id: int, sub: JSON, target: Plan) -> list[JSON]:
        """The subscription's items on `target`: its base price (the current quantity) and
        each of its metered prices."""
        base, metered = self._prices(tenant_id, target)
        licensed = [
            i for i in sub["items"]["data"] if i["price"]["recurring"]["usage_type"] == "licensed"
        ]
        quantity = (licensed[0].get("quantity") or 1) if licensed else 1
        return [{"price": base, "quantity": quantity}] + [{"price": m} for m in sorted(metered)]

    def _changes(self, tenant_id: int, sub: JSON, target: Plan) -> list[ItemChange]:
        base_id, metered = self._prices(tenant_id, target)
        changes: list[ItemChange] = []
        kept: set[str] = set()
        for item in sub["items"]["data"]:
            price = item["price"]
            if price["recurring"]["usage_type"] == "licensed":
                changes.append(ItemChange(item["id"], base_id, item.get("quantity") or 1))
            elif price["id"] in metered:
                kept.add(price["id"])
            else:
                changes.append(ItemChange(item["id"], None, deleted=True))
        changes += [ItemChange(None, p) for p in sorted(metered - kept)]
        return changes

    def _plan_of(self, tenant_id: int, prices: list[str]) -> str | None:
        for price in prices:
            found = self._objects.by_stripe_id(price)
            if found is not None and found[0] == tenant_id and found[1].kind == "price":
                return found[1].key
        return None


def _is_upgrade(current: Plan, target: Plan) -> bool:
    now = current.price.amount if current.price else 0
    assert target.price is not None
    return target.price.amount > now


def proration_date(sub: JSON, given: int | None, clock: Clock) -> int:
    """`given` (or now) when it lies in the subscription's current period; else a 422 naming
    `proration_date`."""
    at = clock.now_ms() // 1000 if given is None else given
    start, end = _period_start(sub), _period_end(sub)
    if not start <= at <= end:
        problem = f"must lie in the current period [{start}, {end}]"
        raise ValidationFailed([FieldError("proration_date", problem)])
    return at


def _period_start(sub: JSON) -> int:
    return min(int(i["current_period_start"]) for i in sub["items"]["data"])


def _period_end(sub: JSON) -> int:
    return max(int(i["current_period_end"]) for i in sub["items"]["data"])
