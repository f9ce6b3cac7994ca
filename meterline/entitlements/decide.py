"""The pure decision: catalog + subscription + grants + usage + time -> a `Decision`.

No I/O. The service evaluates a feature first (`evaluate`: which plan applies, what it grants,
over which period usage counts), reads the usage of that period, then calls `decide`.

Which plan applies (`choose_plan`):
- no subscription: the catalog's default plan (payment state `none`);
- `active` or `trialing`: the subscribed plan (`ok`);
- `past_due`: the subscribed plan for `grace_days` after `past_due_since` (`grace`), then the
  policy's `then` plan (`fallback`);
- `unpaid`, `canceled`, `paused`: the policy's plan, or the default plan without a policy;
  `incomplete` and `incomplete_expired`: the default plan (all `fallback`);
- a subscribed plan no longer in the catalog: the default plan (`fallback`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from meterline.catalog import (
    BooleanEntitlement,
    Catalog,
    Feature,
    FeatureKind,
    MeteredEntitlement,
    Overage,
    Plan,
    ResetPeriod,
    StaticEntitlement,
    StaticValue,
)
from meterline.entitlements.model import (
    ACTIVE_STATUSES,
    Decision,
    Grant,
    PaymentState,
    Reason,
    Subscription,
)
from meterline.entitlements.periods import Period, billing_period, calendar_period
from meterline.values import exact_sum, to_decimal


@dataclass(frozen=True, slots=True)
class PlanChoice:
    plan: Plan | None
    state: PaymentState
    subscription: Subscription | None = None
    grace_ends: datetime | None = None


@dataclass(frozen=True, slots=True)
class Terms:
    """What one feature gives the customer: `limit` None is unlimited; `meter` for metered."""

    kind: FeatureKind
    limit: Decimal | None = None
    reset: ResetPeriod = ResetPeriod.BILLING_PERIOD
    overage: Overage = Overage.BLOCK
    value: StaticValue | None = None
    meter: str | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A feature evaluated up to the usage read: `terms` None means the feature is not granted."""

    feature: Feature
    choice: PlanChoice
    terms: Terms | None
    period: Period | None
    now: datetime


def choose_plan(catalog: Catalog, sub: Subscription | None, now: datetime) -> PlanChoice:
    """The plan that applies now, by subscription status and payment policy (module docstring)."""
    default = catalog.default_plan
    if sub is None:
        return PlanChoice(default, PaymentState.NONE)
    subscribed = catalog.plan(sub.plan)
    if subscribed is None:
        return PlanChoice(default, PaymentState.FALLBACK, sub)
    if sub.status in ACTIVE_STATUSES:
        return PlanChoice(subscribed, PaymentState.OK, sub)
    policies = catalog.payment_policies
    if sub.status == "past_due":
        if policies.past_due is None:
            return PlanChoice(default, PaymentState.FALLBACK, sub)
        ends = (sub.past_due_since or now) + timedelta(days=policies.past_due.grace_days)
        if now < ends:
            return PlanChoice(subscribed, PaymentState.GRACE, sub, ends)
        return PlanChoice(catalog.plan(policies.past_due.then), PaymentState.FALLBACK, sub, ends)
    policy = {"unpaid": policies.unpaid, "canceled": policies.canceled, "paused": policies.paused}
    chosen = policy.get(sub.status)
    fallback = catalog.plan(chosen.plan) if chosen is not None else default
    return PlanChoice(fallback, PaymentState.FALLBACK, sub)


def feature_terms(
    feature: Feature, plan: Plan | None, grants: list[Grant], now: datetime
) -> Terms | None:
    """What `plan` plus the customer's live `grants` give for `feature`; None if nothing."""
    live = [g for g in grants if g.feature == feature.key and g.active(now)]
    entitlement = plan.features.get(feature.key) if plan else None
    if feature.kind is FeatureKind.METERED:
        assert entitlement is None or isinstance(entitlement, MeteredEntitlement)
        return _metered_terms(feature, entitlement, live)
    overridden = any(g.kind == "override" for g in live)
    if feature.kind is FeatureKind.BOOLEAN:
        enabled = isinstance(entitlement, BooleanEntitlement) and entitlement.enabled
        return Terms(FeatureKind.BOOLEAN) if enabled or overridden else None
    value = entitlement.value if isinstance(entitlement, StaticEntitlement) else feature.value
    return None if value is None else Terms(FeatureKind.STATIC, value=value)


def _metered_terms(
    feature: Feature, entitlement: MeteredEntitlement | None, grants: list[Grant]
) -> Terms | None:
    overrides = [g for g in grants if g.kind == "override"]
    credits = exact_sum(g.amount or 0 for g in grants if g.kind != "override")
    if entitlement is None and not grants:
        return None
    base = entitlement or MeteredEntitlement(limit=0)
    limit = None if base.limit is None else to_decimal(base.limit)
    if overrides:
        amounts = [g.amount for g in overrides]
        limit = None if None in amounts else max(to_decimal(a or 0) for a in amounts)
    if limit is not None:
        limit = exact_sum((limit, credits))
    return Terms(FeatureKind.METERED, limit, base.reset, base.overage, meter=feature.meter)


def usage_period(terms: Terms, choice: PlanChoice, now: datetime) -> Period:
    """The period usage counts over: calendar (UTC) or the subscription's billing period.

    A billing-period reset uses the subscription's period while its plan applies (`ok`,
    `grace`), else the calendar month.
    """
    sub = choice.subscription
    paid = choice.state in (PaymentState.OK, PaymentState.GRACE)
    if terms.reset is ResetPeriod.BILLING_PERIOD and paid and sub is not None:
        start, end = sub.current_period_start, sub.current_period_end
        if start is not None and end is not None:
            return billing_period(start, end, now)
    return calendar_period(terms.reset, now)


def evaluate(
    catalog: Catalog, feature: Feature, sub: Subscription | None, grants: list[Grant], now: datetime
) -> Evaluation:
    choice = choose_plan(catalog, sub, now)
    terms = feature_terms(feature, choice.plan, grants, now)
    metered = terms is not None and terms.kind is FeatureKind.METERED
    period = usage_period(terms, choice, now) if metered and terms else None
    return Evaluation(feature, choice, terms, period, now)


def decide(ev: Evaluation, used: Decimal | None = None, amount: Decimal | None = None) -> Decision:
    """The decision for `ev` given the period's `used` total and the `amount` asked for.

    Without an amount (a plain check), a metered feature has access while `used < limit`;
    with one, while `used + amount <= limit`.
    """
    choice, terms = ev.choice, ev.terms
    base = _base(ev)
    if terms is None:
        return replace(base, reason=_denied(choice), kind=ev.feature.kind.value)
    if terms.kind is not FeatureKind.METERED:
        reason = Reason.PAYMENT_GRACE if choice.state is PaymentState.GRACE else Reason.INCLUDED
        kind = terms.kind.value
        return replace(base, has_access=True, reason=reason, kind=kind, value=terms.value)
    used = used or Decimal(0)
    fits = terms.limit is None or (
        exact_sum((used, amount)) <= terms.limit if amount is not None else used < terms.limit
    )
    reason = _metered_reason(terms, choice, fits)
    return replace(
        base,
        has_access=reason is not Reason.LIMIT_EXCEEDED,
        reason=reason,
        limit=terms.limit,
        used=used,
        overage=terms.overage.value,
        period=ev.period,
    )


def _base(ev: Evaluation) -> Decision:
    choice = ev.choice
    return Decision(
        feature=ev.feature.key,
        has_access=False,
        reason=Reason.NOT_IN_PLAN,
        plan=choice.plan.key if choice.plan else None,
        as_of=ev.now,
        payment_state=choice.state,
        subscription_status=choice.subscription.status if choice.subscription else None,
        grace_ends=choice.grace_ends,
    )


def _denied(choice: PlanChoice) -> Reason:
    if choice.state is PaymentState.NONE:
        return Reason.NO_SUBSCRIPTION
    if choice.state is PaymentState.FALLBACK:
        return Reason.SUBSCRIPTION_INACTIVE
    return Reason.NOT_IN_PLAN


def _metered_reason(terms: Terms, choice: PlanChoice, fits: bool) -> Reason:
    if not fits:
        return Reason.OVERAGE_ALLOWED if terms.overage is Overage.ALLOW else Reason.LIMIT_EXCEEDED
    if choice.state is PaymentState.GRACE:
        return Reason.PAYMENT_GRACE
    return Reason.UNLIMITED if terms.limit is None else Reason.WITHIN_LIMIT
