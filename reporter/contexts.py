"""Billing contexts: who billed a customer's usage, and at what price, at each moment.

A context is a customer's plan, Stripe customer and subscription, and the meters that plan
bills with their Stripe meters and prices. `report_contexts` keeps each customer's contexts
over time; a slot is billed by the context in force at its start (`ContextHistory.at`), so a
downgrade or a cancellation never drops or reprices usage that happened before it.

Each push compares the customers' current state (catalog, `customers`, `subscriptions`) with
their newest recorded context (`changes`). A change takes effect at the Stripe event that made
it (`subscriptions.stripe_event_created`, else the row's `updated_at`), rounded up to the
minute like every boundary, so a webhook delivered hours late still dates it right. A
subscription that has ended (canceled, incomplete_expired) bills nothing from then on. A
customer's first context covers all earlier usage (`EPOCH`). Recording a change is the
business of `boundaries.py`, which may have to move it (an hour already pushed is never
split).

Contexts are recorded by each push and by each scheduler tick for the subscriptions whose row
changed since the last tick (`Pusher.sync_changed`, under the push lock). A context change is
also a boundary, so the hour of a mid-hour downgrade is two slots: the usage before goes out
under the old context (Stripe bills it on the old item, by the event's timestamp), the usage
after under the new one. Reconciliation reads the same history, hour by hour.

Known limits: `subscriptions` holds only the current state, so two changes of one
subscription within one tick (15 s) leave only the second. Reconciliation and repairs see a
customer only once its first context is recorded. A change is dated by the newest Stripe
event applied to the subscription; if a later event of the same subscription was applied
before the change's webhook arrived, the change is dated later than it happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from meterline.catalog.model import Catalog
from reporter.scope import BilledCustomer, BilledMeter, TenantScope, billed_meters, same_prices
from reporter.slots import HOUR, ceil_minute

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ENDED = ("canceled", "incomplete_expired")


@dataclass(frozen=True, slots=True)
class Context:
    customer: str
    since: datetime
    plan: str | None
    stripe_customer_id: str
    subscription: str | None
    meters: dict[str, BilledMeter]

    def same_terms(self, other: Context) -> bool:
        """Same plan, Stripe customer, subscription and prices (whatever `since`)."""
        return (self.plan, self.stripe_customer_id, self.subscription) == (
            other.plan,
            other.stripe_customer_id,
            other.subscription,
        ) and same_prices(self.meters, other.meters)


@dataclass(frozen=True, slots=True)
class Current:
    """A customer's state now, and since when (the Stripe event that made it)."""

    context: Context
    changed_at: datetime
    period: tuple[datetime | None, datetime | None]


@dataclass
class ContextHistory:
    tenant_id: int
    contexts: dict[str, list[Context]] = field(default_factory=dict)

    def at(self, customer: str, when: datetime) -> Context | None:
        """The context in force at `when`: the newest with `since` <= `when`."""
        found = None
        for c in self.contexts.get(customer, ()):
            if c.since > when:
                break
            found = c
        return found

    def meter(self, customer: str, meter: str, when: datetime) -> BilledMeter | None:
        context = self.at(customer, when)
        return None if context is None else context.meters.get(meter)

    def add(self, context: Context) -> None:
        """Insert `context` in its customer's history, in `since` order."""
        mine = self.contexts.setdefault(context.customer, [])
        mine.append(context)
        if len(mine) > 1 and mine[-2].since > context.since:
            mine.sort(key=lambda c: c.since)

    def latest(self, customer: str) -> Context | None:
        found = self.contexts.get(customer)
        return found[-1] if found else None

    def scope(self) -> TenantScope:
        """Every meter any context of a customer billed (for `period_maxima`'s meter keys)."""
        scope = TenantScope(self.tenant_id)
        for customer, history in self.contexts.items():
            meters = {k: m for c in history for k, m in c.meters.items()}
            scope.customers[customer] = BilledCustomer(customer, history[-1].stripe_customer_id,
                                                       history[-1].plan or "", meters)  # fmt: skip
        return scope


@dataclass(frozen=True, slots=True)
class State:
    """A customer's row as the store reads it: its Stripe id and its subscription (all None
    without one), and when that state began (the Stripe event that made it)."""

    customer: str
    stripe_customer_id: str
    plan: str | None
    status: str | None
    subscription: str | None
    period_start: datetime | None
    period_end: datetime | None
    changed_at: datetime


class ContextStore(Protocol):
    """Where contexts and boundaries are kept (`reporter/postgres/contexts.py`)."""

    def history(self, tenant_id: int, customers: Sequence[str] | None = None) -> ContextHistory:
        """The tenant's recorded contexts (only `customers`' when given)."""

    def current(self, tenant_id: int, customers: Sequence[str] | None = None) -> list[Current]:
        """Every customer with a Stripe id (of `customers` when given), with the context its
        subscription gives it now (`current_contexts`); none before a catalog is published."""

    def boundaries(
        self, tenant_id: int, customers: Sequence[str] | None = None
    ) -> dict[str, list[datetime]]:
        """The recorded boundaries (`report_boundaries`) per customer (of `customers`)."""

    def record(
        self,
        tenant_id: int,
        boundaries: Sequence[tuple[str, datetime]],
        contexts: Sequence[Context],
    ) -> None:
        """Record new (customer, at) boundaries and contexts in one transaction; an existing
        boundary or (customer, since) stays."""


def current_contexts(
    catalog: Catalog, meters: dict[str, tuple[str, str]], states: Sequence[State]
) -> list[Current]:
    """Each customer's context now: its plan (the catalog's default without a subscription,
    none once it ended) and the meters it bills that have a Stripe meter (`meters`). Pure."""
    out = []
    by_plan: dict[str, dict[str, BilledMeter]] = {}
    for s in states:
        ended = s.status in ENDED
        plan = None if ended else (catalog.plan(s.plan) if s.plan else catalog.default_plan)
        billed: dict[str, BilledMeter] = {}
        if plan is not None:
            if plan.key not in by_plan:
                by_plan[plan.key] = billed_meters(catalog, meters, plan)
            billed = by_plan[plan.key]
        context = Context(s.customer, EPOCH, plan.key if billed and plan else None,
                          s.stripe_customer_id, s.subscription, billed)  # fmt: skip
        out.append(Current(context, ceil_minute(s.changed_at), (s.period_start, s.period_end)))
    return out


def billed_at(
    history: ContextHistory, customer: str, meter: str, when: datetime
) -> tuple[Context, BilledMeter] | None:
    """The context that billed `customer`'s `meter` at `when` (or within the hour that starts
    there), and the meter as it billed it; None when no context did."""
    for context in history.contexts.get(customer, ()):
        in_force = context is history.at(customer, when)
        if meter in context.meters and (in_force or when <= context.since < when + HOUR):
            return context, context.meters[meter]
    return None
