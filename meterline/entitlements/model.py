"""The entitlement domain's values: customers, subscriptions, grants, reasons and decisions.

All are frozen. Times are aware UTC datetimes; amounts and limits are floats in the meter's unit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from meterline.entitlements.periods import Period, iso
from meterline.values import from_micros, json_number, micros


class Reason(enum.StrEnum):
    """Why a decision came out as it did: the closed set every answer's `reason` is drawn from.

    Access granted:
    - `within_limit`: a metered feature whose usage (plus the amount asked) fits its limit.
    - `overage_allowed`: past the limit, but the plan's overage policy is `allow` (billed).
    - `unlimited`: a metered feature without a limit (plan or override grant).
    - `included`: a boolean or static feature the plan (or an override grant) includes.
    - `payment_grace`: the subscription is past due but within the policy's grace days; the
      paid plan still applies (a limit is still enforced: past it the reason is limit_exceeded).

    Access refused:
    - `limit_exceeded`: a blocking limit would be passed.
    - `not_in_plan`: the customer's plan does not include the feature.
    - `no_subscription`: the customer has no subscription and the default plan lacks the feature.
    - `subscription_inactive`: the subscription is canceled, unpaid, paused, incomplete or past
      its grace, and the plan its payment policy falls back to lacks the feature.
    """

    WITHIN_LIMIT = "within_limit"
    OVERAGE_ALLOWED = "overage_allowed"
    UNLIMITED = "unlimited"
    INCLUDED = "included"
    PAYMENT_GRACE = "payment_grace"
    LIMIT_EXCEEDED = "limit_exceeded"
    NOT_IN_PLAN = "not_in_plan"
    NO_SUBSCRIPTION = "no_subscription"
    SUBSCRIPTION_INACTIVE = "subscription_inactive"


class PaymentState(enum.StrEnum):
    """Which plan rule applied: none (default plan), ok (paid plan), grace, or fallback."""

    NONE = "none"
    OK = "ok"
    GRACE = "grace"
    FALLBACK = "fallback"


SUBSCRIPTION_SOURCES = ("stripe", "manual", "lifetime")
SUBSCRIPTION_STATUSES = (
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "paused",
)
ACTIVE_STATUSES = frozenset({"active", "trialing"})
GRANT_KINDS = ("credit", "top_up", "override")


@dataclass(frozen=True, slots=True)
class Customer:
    tenant_id: int
    id: str
    stripe_customer_id: str | None = None
    name: str | None = None
    email: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stripe_customer_id": self.stripe_customer_id,
            "name": self.name,
            "email": self.email,
        }


@dataclass(frozen=True, slots=True)
class Subscription:
    """A customer's current plan. `source` 'lifetime' has no period; 'manual' may have one."""

    tenant_id: int
    customer: str
    plan: str
    status: str = "active"
    source: str = "manual"
    stripe_subscription_id: str | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    past_due_since: datetime | None = None
    cancel_at_period_end: bool = False
    stripe_event_created: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "status": self.status,
            "source": self.source,
            "stripe_subscription_id": self.stripe_subscription_id,
            "current_period_start": _iso(self.current_period_start),
            "current_period_end": _iso(self.current_period_end),
            "past_due_since": _iso(self.past_due_since),
            "cancel_at_period_end": self.cancel_at_period_end,
        }


@dataclass(frozen=True, slots=True)
class Grant:
    """A credit, top-up or override of one feature for one customer.

    Valid on `[effective_at, expires_at)`. A credit or top-up adds `amount` to the limit of every
    period it is valid in; an override replaces the plan's entitlement (`amount` None: unlimited)
    and gives access even to a feature the plan lacks.
    """

    id: int
    tenant_id: int
    customer: str
    feature: str
    kind: str
    amount: Decimal | None
    effective_at: datetime
    expires_at: datetime | None = None
    note: str | None = None
    voided_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        live = self.voided_at is None or self.voided_at > now
        started = self.effective_at <= now
        return live and started and (self.expires_at is None or now < self.expires_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer": self.customer,
            "feature": self.feature,
            "kind": self.kind,
            "amount": json_number(self.amount),
            "effective_at": iso(self.effective_at),
            "expires_at": _iso(self.expires_at),
            "note": self.note,
            "voided_at": _iso(self.voided_at),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """One entitlement answer. `limit` None means unlimited (or not metered)."""

    feature: str
    has_access: bool
    reason: Reason
    plan: str | None
    as_of: datetime
    kind: str = "metered"
    limit: Decimal | None = None
    used: Decimal | None = None
    overage: str | None = None
    period: Period | None = None
    value: Any = None
    payment_state: PaymentState = PaymentState.NONE
    subscription_status: str | None = None
    grace_ends: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def remaining(self) -> Decimal | None:
        if self.limit is None or self.used is None:
            return None
        return max(Decimal(0), from_micros(micros(self.limit) - micros(self.used)))

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "feature": self.feature,
            "kind": self.kind,
            "has_access": self.has_access,
            "reason": self.reason.value,
            "limit": _number(self.limit),
            "used": _number(self.used),
            "remaining": _number(self.remaining),
            "overage": self.overage,
            "plan": self.plan,
            "period": self.period.as_dict() if self.period else None,
            "payment_state": self.payment_state.value,
            "subscription_status": self.subscription_status,
            "as_of": iso(self.as_of),
        }
        if self.kind == "static":
            doc["value"] = self.value
        if self.grace_ends is not None:
            doc["grace_ends"] = iso(self.grace_ends)
        return doc | self.extra


def _iso(when: datetime | None) -> str | None:
    return None if when is None else iso(when)


def _number(x: Decimal | None) -> Any:
    return json_number(x)
