"""Revenue events rebuilt from what Stripe still tells (`meterline revenue rebuild`).

The history is the subscription events Stripe still lists, each read exactly as the webhook
listener reads it (same event id, so a rebuild and the webhooks agree row for row). Stripe
keeps events for 30 days, so a subscription whose `customer.subscription.created` event is no
longer listed gets a start rebuilt from its current object: its items at `start_date`, as
`trialing` until `trial_end` when it had a trial, then `active`; and `canceled` at `ended_at`
when it has ended (one that never started, `incomplete` or `incomplete_expired`, keeps that
status alone). What changed before the listed events (plan or quantity changes, a past-due
spell) is not known from the object, so such a start shows today's items: kept webhooks are
the exact record, a rebuild is the best Stripe can still say. Invoices are not read for
states: a licensed line bills the coming period and prorations split changes across invoices,
so they would add no state the events and the objects do not give. They are read for what
they alone tell: the metered part of every closed invoice (`meterline.revenue.invoices`),
replaced with the states in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from meterline.entitlements.model import Customer
from meterline.entitlements.repository import CustomerRepository
from meterline.revenue.invoices import InvoiceLines, metered_invoice
from meterline.revenue.listener import STATE_EVENTS
from meterline.revenue.model import MeteredInvoice, SubscriptionState
from meterline.revenue.parse import customer_of, subscription_state
from meterline.revenue.store import RevenueEventStore
from meterline.stripe.webhook_events import StripeEvent

JSON = dict[str, Any]
NEVER_PAID = frozenset({"incomplete", "incomplete_expired"})
# Stripe customer ids -> (their subscription events, oldest first; their subscriptions now):
# `meterline.stripe.revenue_history.subscription_history` bound to a client.
History = Callable[[Collection[str]], tuple[list[StripeEvent], list[JSON]]]
# Stripe customer ids -> every invoice of theirs (`invoice_history` bound to a client).
Invoices = Callable[[Collection[str]], list[JSON]]


def rebuilt_states(
    events: Sequence[StripeEvent], subscriptions: Sequence[JSON], customers: Mapping[str, str]
) -> list[tuple[str, SubscriptionState]]:
    """(event id, state) for each listed event of a known customer, and a rebuilt start (and
    end) for each subscription whose creation is no longer listed. `customers` maps Stripe
    customer ids to the tenant's customer ids."""
    kept = [
        (e.id, subscription_state(e.object, customers[owner], e.created))
        for e in events
        if e.type in STATE_EVENTS and (owner := customer_of(e.object) or "") in customers
    ]
    created = {e.subscription_id for e in events if e.type == "customer.subscription.created"}
    for obj in subscriptions:
        tenant_customer = customers.get(customer_of(obj) or "")
        if tenant_customer is not None and obj.get("id") not in created:
            kept.extend(_rebuilt(obj, tenant_customer))
    return kept


def _rebuilt(obj: JSON, customer: str) -> list[tuple[str, SubscriptionState]]:
    start = _seconds(obj, "start_date") or _seconds(obj, "created") or 0
    trial_end, ended = _seconds(obj, "trial_end"), _seconds(obj, "ended_at")
    now = subscription_state(obj, customer, start)
    sub = now.subscription
    if now.status in NEVER_PAID:  # it never started: nothing to rebuild but what it is
        return [(f"rebuild:{sub}:start", now)]
    trialing = trial_end is not None and trial_end > start
    found = [(f"rebuild:{sub}:start", replace(now, status="trialing" if trialing else "active"))]
    if trialing and trial_end is not None and (ended is None or trial_end < ended):
        found.append((f"rebuild:{sub}:trial_end", replace(now, at=_at(trial_end), status="active")))
    if ended is not None:
        found.append((f"rebuild:{sub}:ended", replace(now, at=_at(ended), status="canceled")))
    return found


def _seconds(obj: JSON, field: str) -> int | None:
    value = obj.get(field)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def rebuild_tenant(
    history: History,
    customers: CustomerRepository,
    store: RevenueEventStore,
    tenant_id: int,
    invoices: tuple[Invoices, InvoiceLines] | None = None,
) -> list[tuple[str, SubscriptionState]]:
    """Replace the tenant's revenue events with what Stripe tells now (see the module
    docstring), and its metered invoices too when `invoices` (the listing, the line reader)
    is given; returns the states. Raises StripeError when Stripe cannot be reached (nothing
    is replaced then)."""
    every = _all_customers(customers, tenant_id)
    mapping = {c.stripe_customer_id: c.id for c in every if c.stripe_customer_id}
    events, subscriptions = history(mapping)
    states = rebuilt_states(events, subscriptions, mapping)
    metered = None if invoices is None else rebuilt_invoices(*invoices, mapping)
    store.replace(tenant_id, states, metered)
    return states


def rebuilt_invoices(
    listing: Invoices, lines: InvoiceLines, customers: Mapping[str, str]
) -> list[MeteredInvoice]:
    """The metered part of every closed invoice of the mapped customers."""
    found = []
    for obj in listing(customers):
        owner = customers.get(customer_of(obj) or "")
        invoice = None if owner is None else metered_invoice(obj, owner, lines)
        if invoice is not None:
            found.append(invoice)
    return found


def _all_customers(customers: CustomerRepository, tenant_id: int) -> list[Customer]:
    found: list[Customer] = []
    while page := customers.list(tenant_id, 100, found[-1].id if found else None):
        found.extend(page)
    return found
