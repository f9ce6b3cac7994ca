"""Checkout for a plan (subscription mode) or a credit pack (payment mode), and its fulfilment.

`start` makes a Stripe Checkout Session for the customer (the Stripe customer is created on
first need) and returns it; the app sends its user to `session.url`. `fulfil(session_id)` runs
when `checkout.session.completed` arrives: it fetches the session from Stripe (never trusting
the webhook body), and once the session is complete and paid:
- a plan: the subscription the session made is synced at once (`sync_subscription`), so the
  plan is active without waiting for the subscription's own webhooks;
- a credit pack: each credit becomes a `credit` grant of the buyer, as the pack was when sold
  (its credits travel in the session's `metadata.meterline_credits`).
Either way the session's record is written once (`FulfilmentRepository`), so a webhook delivered
twice or out of order fulfils it once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from meterline.billing.fulfilments import Fulfilment, FulfilmentRepository
from meterline.catalog import Catalog, Plan
from meterline.catalog.model import limit_to_json
from meterline.entitlements import CustomerRepository, NewGrant, SubscriptionRepository
from meterline.errors import Conflict, FieldError, ValidationFailed
from meterline.stripe.catalog_sync import StripeObjectRepository
from meterline.stripe.checkout import CheckoutOrder, CheckoutSession, StripeCheckout

LIVE_STATUSES = ("active", "trialing", "past_due", "unpaid", "paused", "incomplete")


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """Exactly one of `plan` and `credit_pack`; the URLs are where Checkout returns to."""

    plan: str | None
    credit_pack: str | None
    success_url: str
    cancel_url: str


@dataclass(frozen=True, slots=True)
class CheckoutPorts:
    """What checkout needs from the rest of Meterline."""

    catalog_of: Callable[[int], Catalog]
    customers: CustomerRepository
    subscriptions: SubscriptionRepository
    objects: StripeObjectRepository
    stripe_customer: Callable[[int, str], str]
    sync_subscription: Callable[[str], object]
    fulfilments: FulfilmentRepository


class BillingCheckout:
    def __init__(self, ports: CheckoutPorts, stripe: StripeCheckout) -> None:
        self._p = ports
        self._stripe = stripe

    def start(self, tenant_id: int, customer: str, req: CheckoutRequest) -> CheckoutSession:
        """Raises ValidationFailed (422, naming the field) for an unknown or unpriced plan or
        pack, Conflict (409) when the customer already has a live Stripe subscription."""
        catalog = self._p.catalog_of(tenant_id)
        if (req.plan is None) == (req.credit_pack is None):
            raise ValidationFailed([FieldError("plan", "give exactly one of plan, credit_pack")])
        metadata = {"meterline_tenant": str(tenant_id), "meterline_customer": customer}
        if req.plan is not None:
            prices, kind, item, mode = self._plan_prices(tenant_id, catalog, req.plan)
            self.refuse_if_subscribed(tenant_id, customer)
        else:
            assert req.credit_pack is not None
            prices, kind, item, mode = self._pack_prices(tenant_id, catalog, req.credit_pack)
            metadata["meterline_credits"] = credits_to_metadata(catalog, req.credit_pack)
        metadata |= {"meterline_kind": kind, "meterline_item": item}
        self._p.customers.ensure(tenant_id, customer)
        stripe_customer = self._p.stripe_customer(tenant_id, customer)
        order = CheckoutOrder(
            stripe_customer, mode, prices, req.success_url, req.cancel_url, metadata
        )
        return self._stripe.create(order)

    def _plan_prices(
        self, tenant_id: int, catalog: Catalog, key: str
    ) -> tuple[tuple[tuple[str, int | None], ...], str, str, str]:
        plan = _priced_plan(catalog, key)
        return self._subscription_prices(tenant_id, plan), "plan", key, "subscription"

    def _subscription_prices(
        self, tenant_id: int, plan: Plan
    ) -> tuple[tuple[str, int | None], ...]:
        prices: list[tuple[str, int | None]] = []
        base = self._p.objects.get(tenant_id, "price", plan.key)
        if base is not None and plan.price is not None:
            prices.append((base.stripe_id, 1))
        for meter in plan.metered_prices:
            found = self._p.objects.get(tenant_id, "metered_price", f"{plan.key}/{meter}")
            if found is not None:
                prices.append((found.stripe_id, None))
        if not prices:
            raise Conflict(f"plan {plan.key} is not synced to Stripe yet; apply the catalog")
        return tuple(prices)

    def _pack_prices(
        self, tenant_id: int, catalog: Catalog, key: str
    ) -> tuple[tuple[tuple[str, int | None], ...], str, str, str]:
        pack = catalog.credit_pack(key)
        if pack is None:
            known = ", ".join(p.key for p in catalog.credit_packs) or "none"
            raise ValidationFailed([FieldError("credit_pack", f"unknown pack; packs: {known}")])
        price = self._p.objects.get(tenant_id, "pack_price", key)
        if price is None:
            raise Conflict(f"credit pack {key} is not synced to Stripe yet; apply the catalog")
        return ((price.stripe_id, 1),), "credit_pack", key, "payment"

    def refuse_if_subscribed(self, tenant_id: int, customer: str) -> None:
        """Conflict (409) when the customer already has a live Stripe subscription: a plan
        change, not a second checkout, is the way to another plan."""
        sub = self._p.subscriptions.get(tenant_id, customer)
        if sub is not None and sub.stripe_subscription_id and sub.status in LIVE_STATUSES:
            raise Conflict(
                f"customer {customer} already subscribes to {sub.plan} "
                f"({sub.stripe_subscription_id}); change the plan instead"
            )

    def fulfil(self, session_id: str) -> str:
        """Fulfil a completed session once; returns `fulfilled`, `duplicate` or `ignored`
        (not ours, not complete, or not paid). Raises StripeError when Stripe cannot be read."""
        session = self._stripe.retrieve(session_id)
        meta = session.metadata
        if not session.paid or "meterline_kind" not in meta:
            return "ignored"
        tenant_id, customer = int(meta["meterline_tenant"]), meta["meterline_customer"]
        kind, item = meta["meterline_kind"], meta["meterline_item"]
        grants: list[NewGrant] = []
        if kind == "plan" and session.subscription:
            self._p.sync_subscription(session.subscription)
        elif kind == "credit_pack":
            grants = _pack_grants(customer, meta.get("meterline_credits", "{}"), session_id, item)
        record = Fulfilment(session_id, tenant_id, customer, kind, item)
        return "fulfilled" if self._p.fulfilments.fulfil(record, grants) else "duplicate"


def _priced_plan(catalog: Catalog, key: str) -> Plan:
    plan = catalog.plan(key)
    priced = [p.key for p in catalog.plans if p.price is not None or p.metered_prices]
    if plan is None or key not in priced:
        what = "unknown plan" if plan is None else "this plan has no price"
        raise ValidationFailed([FieldError("plan", f"{what}; priced plans: {', '.join(priced)}")])
    return plan


def credits_to_metadata(catalog: Catalog, key: str) -> str:
    """The pack's credits as sold, kept on the session: a later catalog change does not alter
    what a completed purchase gives."""
    pack = catalog.credit_pack(key)
    assert pack is not None
    return json.dumps({f: limit_to_json(a) for f, a in pack.credits.items()}, separators=(",", ":"))


def _pack_grants(customer: str, credits: str, session_id: str, key: str) -> list[NewGrant]:
    note = f"credit pack {key} (Checkout {session_id})"
    return [
        NewGrant(customer, feature, "credit", float(amount), note=note)
        for feature, amount in json.loads(credits).items()
    ]
