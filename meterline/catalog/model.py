"""Typed, frozen objects for a tenant's catalog: meters, features, plans and payment policies.

Objects are built by `meterline.catalog.parse`, which validates every rule; constructing them by
hand skips that validation. `to_document()` gives the JSON-ready form, which is also a valid
catalog file: `parse_catalog(c.to_document()) == c` for every validated catalog.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TypeAlias

KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""Meter, feature and plan keys; match with `fullmatch`."""

StaticValue: TypeAlias = str | int | float | bool
"""The value a static feature carries (a JSON scalar other than null)."""

Limit: TypeAlias = int | Decimal
"""A metered limit: an `int` when integral, else a `Decimal`; never negative."""

Document: TypeAlias = dict[str, Any]


class Aggregation(enum.StrEnum):
    """How a meter folds a period's events into one number."""

    SUM = "sum"
    COUNT = "count"
    MAX = "max"
    LATEST = "latest"


class FeatureKind(enum.StrEnum):
    BOOLEAN = "boolean"
    METERED = "metered"
    STATIC = "static"


class ResetPeriod(enum.StrEnum):
    """When a metered limit's usage starts again from zero."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    BILLING_PERIOD = "billing_period"


class Overage(enum.StrEnum):
    """What happens past the limit: refuse (`block`) or grant and bill (`allow`)."""

    BLOCK = "block"
    ALLOW = "allow"


class Interval(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


def _frozen(mapping: Mapping[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(dict(mapping))


def limit_to_json(limit: Limit | None) -> int | str | None:
    """An `int` stays an `int`; a `Decimal` becomes its exact string form."""
    return format(limit, "f") if isinstance(limit, Decimal) else limit


@dataclass(frozen=True, slots=True)
class Meter:
    """What events count: events whose `meter` is `key`, folded by `aggregation`.

    `value_property` names the field of a CloudEvent's `data` that carries the value.
    """

    key: str
    aggregation: Aggregation
    value_property: str = "value"
    name: str | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.key

    def to_document(self) -> Document:
        doc: Document = {"key": self.key, "aggregation": self.aggregation.value}
        doc["value_property"] = self.value_property
        if self.name is not None:
            doc["name"] = self.name
        return doc


@dataclass(frozen=True, slots=True)
class Feature:
    """Something a plan grants.

    `meter` is set for metered features only. `value` is for static features only: the value of
    the feature in every plan that does not set its own; with `None` the feature is only in the
    plans that set a value.
    """

    key: str
    kind: FeatureKind
    meter: str | None = None
    value: StaticValue | None = None
    name: str | None = None

    @property
    def display_name(self) -> str:
        return self.name or self.key

    def to_document(self) -> Document:
        doc: Document = {"key": self.key, "kind": self.kind.value}
        if self.meter is not None:
            doc["meter"] = self.meter
        if self.value is not None:
            doc["value"] = self.value
        if self.name is not None:
            doc["name"] = self.name
        return doc


@dataclass(frozen=True, slots=True)
class Price:
    """A plan's recurring base price; `amount` is in the currency's minor units (900 = $9.00)."""

    amount: int
    currency: str
    interval: Interval

    def to_document(self) -> Document:
        return {"amount": self.amount, "currency": self.currency, "interval": self.interval.value}


class TiersMode(enum.StrEnum):
    """Stripe's `tiers_mode`: each unit at its own tier's price, or all at the reached tier's."""

    GRADUATED = "graduated"
    VOLUME = "volume"


class Rounding(enum.StrEnum):
    """Stripe's `transform_quantity.round`: how a partial package counts."""

    UP = "up"
    DOWN = "down"


def decimal_to_json(amount: Decimal) -> str:
    """A money amount's exact string form (`"0.05"`), as Stripe's `*_decimal` fields take it."""
    return format(amount, "f")


@dataclass(frozen=True, slots=True)
class Tier:
    """One tier of a tiered price: usage up to `up_to` (`None`: no upper bound, Stripe's `inf`).

    The tier starts where the previous one ends. `unit_amount_decimal` is charged per unit and
    `flat_amount_decimal` once for the tier; both in minor units, `None` when not set.
    """

    up_to: int | None
    unit_amount_decimal: Decimal | None = None
    flat_amount_decimal: Decimal | None = None

    def to_document(self) -> Document:
        doc: Document = {"up_to": "inf" if self.up_to is None else self.up_to}
        if self.unit_amount_decimal is not None:
            doc["unit_amount_decimal"] = decimal_to_json(self.unit_amount_decimal)
        if self.flat_amount_decimal is not None:
            doc["flat_amount_decimal"] = decimal_to_json(self.flat_amount_decimal)
        return doc


FREE_TIER_AMOUNT = Decimal(0)


@dataclass(frozen=True, slots=True)
class Package:
    """`amount_decimal` per started (`UP`) or completed (`DOWN`) group of `divide_by` units.

    Stripe: a per-unit price with `transform_quantity{divide_by, round}`.
    """

    divide_by: int
    round: Rounding
    amount_decimal: Decimal

    def to_document(self) -> Document:
        return {
            "divide_by": self.divide_by,
            "round": self.round.value,
            "amount_decimal": decimal_to_json(self.amount_decimal),
        }


@dataclass(frozen=True, slots=True)
class MeteredPrice:
    """The price of a meter's usage over a billing period, in minor units, as Stripe prices it.

    Exactly one form is set: `per_unit` (Stripe's `unit_amount_decimal`), `tiers` with
    `tiers_mode`, or `package`. `included` units a period are free: a first graduated tier up to
    `included` at 0 (see `stripe_tiers`); it goes with the per-unit and graduated forms only.
    """

    currency: str
    per_unit: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    tiers_mode: TiersMode | None = None
    package: Package | None = None
    included: int = 0

    @property
    def unit_amount_decimal(self) -> Decimal:
        """The price of one more unit past every boundary: the per-unit amount, the last tier's
        unit amount, or the package amount spread over its units.

        A marginal rate for putting money on a difference of units (reconciliation alerts); it
        is not the amount of an invoice line, which depends on the whole period's usage.
        """
        if self.package is not None:
            return self.package.amount_decimal / self.package.divide_by
        if self.tiers:
            return self.tiers[-1].unit_amount_decimal or FREE_TIER_AMOUNT
        return self.per_unit if self.per_unit is not None else FREE_TIER_AMOUNT

    @property
    def stripe_tiers_mode(self) -> TiersMode | None:
        """Stripe's `tiers_mode`, `None` for a per-unit Stripe price (with or without package)."""
        if self.included and self.tiers_mode is None:
            return TiersMode.GRADUATED
        return self.tiers_mode

    def stripe_tiers(self) -> tuple[Tier, ...]:
        """The tiers Stripe gets: `tiers`, or the per-unit amount as one tier, behind a free
        first tier up to `included` when there is one; empty for a per-unit Stripe price."""
        if not self.included:
            return self.tiers
        rest = self.tiers or (Tier(None, self.per_unit),)
        return (Tier(self.included, FREE_TIER_AMOUNT), *rest)

    def to_document(self) -> Document:
        doc: Document = {}
        if self.per_unit is not None:
            doc["unit_amount_decimal"] = decimal_to_json(self.per_unit)
        if self.tiers_mode is not None:
            doc["tiers_mode"] = self.tiers_mode.value
            doc["tiers"] = [tier.to_document() for tier in self.tiers]
        if self.package is not None:
            doc["package"] = self.package.to_document()
        if self.included:
            doc["included"] = self.included
        doc["currency"] = self.currency
        return doc


@dataclass(frozen=True, slots=True)
class MeteredEntitlement:
    """A metered feature in a plan: `limit` units per `reset` period; `None` means unlimited."""

    limit: Limit | None = None
    reset: ResetPeriod = ResetPeriod.BILLING_PERIOD
    overage: Overage = Overage.BLOCK

    @property
    def unlimited(self) -> bool:
        return self.limit is None

    def to_json(self) -> Document:
        limit = limit_to_json(self.limit)
        return {"limit": limit, "reset": self.reset.value, "overage": self.overage.value}


@dataclass(frozen=True, slots=True)
class BooleanEntitlement:
    """A boolean feature in a plan: on or explicitly off."""

    enabled: bool

    def to_json(self) -> bool:
        return self.enabled


@dataclass(frozen=True, slots=True)
class StaticEntitlement:
    """A static feature in a plan, with the plan's own value."""

    value: StaticValue

    def to_json(self) -> StaticValue:
        return self.value


PlanEntitlement: TypeAlias = MeteredEntitlement | BooleanEntitlement | StaticEntitlement


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan: what it costs and which features it grants.

    `features` maps a feature key to its entitlement; a feature absent from it is not in the plan
    (a static feature with a declared `value` excepted). `metered_prices` maps a meter key to its
    per-unit price. The default plan is the plan of customers with no subscription.
    """

    key: str
    default: bool = False
    name: str | None = None
    price: Price | None = None
    metered_prices: Mapping[str, MeteredPrice] = field(default_factory=dict)
    features: Mapping[str, PlanEntitlement] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metered_prices", _frozen(self.metered_prices))
        object.__setattr__(self, "features", _frozen(self.features))

    @property
    def display_name(self) -> str:
        return self.name or self.key

    def to_document(self) -> Document:
        doc: Document = {"key": self.key, "default": self.default}
        if self.name is not None:
            doc["name"] = self.name
        if self.price is not None:
            doc["price"] = self.price.to_document()
        if self.metered_prices:
            doc["metered_prices"] = {k: p.to_document() for k, p in self.metered_prices.items()}
        doc["features"] = {k: e.to_json() for k, e in self.features.items()}
        return doc


@dataclass(frozen=True, slots=True)
class PastDuePolicy:
    """A past-due customer keeps their plan for `grace_days`, then moves to plan `then`."""

    grace_days: int
    then: str

    def to_document(self) -> Document:
        return {"grace_days": self.grace_days, "then": self.then}


@dataclass(frozen=True, slots=True)
class FallbackPolicy:
    """A customer in this payment state is treated as being on `plan`."""

    plan: str

    def to_document(self) -> Document:
        return {"plan": self.plan}


PaymentPolicy: TypeAlias = PastDuePolicy | FallbackPolicy


@dataclass(frozen=True, slots=True)
class PaymentPolicies:
    """Plans that apply by subscription payment state (data is never deleted).

    A policy left out (`None`) means the default plan applies at once in that state.
    """

    past_due: PastDuePolicy | None = None
    unpaid: FallbackPolicy | None = None
    canceled: FallbackPolicy | None = None
    paused: FallbackPolicy | None = None

    def items(self) -> tuple[tuple[str, PaymentPolicy], ...]:
        """The policies that are set, as (state, policy) in declaration order."""
        pairs = (
            ("past_due", self.past_due),
            ("unpaid", self.unpaid),
            ("canceled", self.canceled),
            ("paused", self.paused),
        )
        return tuple((state, p) for state, p in pairs if p is not None)

    def to_document(self) -> Document:
        return {state: policy.to_document() for state, policy in self.items()}


PAYMENT_STATES: tuple[str, ...] = ("past_due", "unpaid", "canceled", "paused")


class OverLimit(enum.StrEnum):
    """After a downgrade, usage already past the new plan's limits: `block` new usage until the
    feature's next reset, or `allow_until_reset` (access stays open until then)."""

    BLOCK = "block"
    ALLOW_UNTIL_RESET = "allow_until_reset"


@dataclass(frozen=True, slots=True)
class PlanChangePolicy:
    over_limit: OverLimit = OverLimit.BLOCK

    def to_document(self) -> Document:
        return {"over_limit": self.over_limit.value}


@dataclass(frozen=True, slots=True)
class OneTimePrice:
    """A one-time price in the currency's minor units (Stripe: a price without `recurring`)."""

    amount: int
    currency: str

    def to_document(self) -> Document:
        return {"amount": self.amount, "currency": self.currency}


@dataclass(frozen=True, slots=True)
class CreditPack:
    """A pay-as-you-go purchase: `credits` maps a metered feature to the units a purchase adds
    (each becomes a credit grant of the buyer once the payment completes)."""

    key: str
    price: OneTimePrice
    credits: Mapping[str, Limit]
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "credits", _frozen(self.credits))

    @property
    def display_name(self) -> str:
        return self.name or self.key

    def to_document(self) -> Document:
        doc: Document = {"key": self.key}
        if self.name is not None:
            doc["name"] = self.name
        doc["price"] = self.price.to_document()
        doc["credits"] = {k: limit_to_json(v) for k, v in self.credits.items()}
        return doc


@dataclass(frozen=True, slots=True)
class Catalog:
    """A tenant's whole catalog. Sections keep the order of the file; keys are unique in each."""

    meters: tuple[Meter, ...] = ()
    features: tuple[Feature, ...] = ()
    plans: tuple[Plan, ...] = ()
    payment_policies: PaymentPolicies = field(default_factory=PaymentPolicies)
    credit_packs: tuple[CreditPack, ...] = ()
    plan_changes: PlanChangePolicy = field(default_factory=PlanChangePolicy)
    _meters: Mapping[str, Meter] = field(init=False, repr=False, compare=False)
    _features: Mapping[str, Feature] = field(init=False, repr=False, compare=False)
    _plans: Mapping[str, Plan] = field(init=False, repr=False, compare=False)
    _packs: Mapping[str, CreditPack] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_meters", _frozen({m.key: m for m in self.meters}))
        object.__setattr__(self, "_features", _frozen({f.key: f for f in self.features}))
        object.__setattr__(self, "_plans", _frozen({p.key: p for p in self.plans}))
        object.__setattr__(self, "_packs", _frozen({p.key: p for p in self.credit_packs}))

    def meter(self, key: str) -> Meter | None:
        return self._meters.get(key)

    def feature(self, key: str) -> Feature | None:
        return self._features.get(key)

    def plan(self, key: str) -> Plan | None:
        return self._plans.get(key)

    def credit_pack(self, key: str) -> CreditPack | None:
        return self._packs.get(key)

    @property
    def default_plan(self) -> Plan | None:
        """The plan of customers with no subscription; `None` only when there are no plans."""
        return next((p for p in self.plans if p.default), None)

    def to_document(self) -> Document:
        """The JSON-ready form, itself a valid catalog file; see `catalog_from_document`."""
        doc: Document = {
            "meters": [m.to_document() for m in self.meters],
            "features": [f.to_document() for f in self.features],
            "plans": [p.to_document() for p in self.plans],
            "payment_policies": self.payment_policies.to_document(),
        }
        if self.credit_packs:
            doc["credit_packs"] = [p.to_document() for p in self.credit_packs]
        if self.plan_changes != PlanChangePolicy():
            doc["plan_changes"] = self.plan_changes.to_document()
        return doc
