"""Dunning driven by Stripe's events and by time: `Dunning.on_event` and `Dunning.run_due`.

`on_event` takes a verified Stripe event after the subscription sync stored it (so the
subscription's status is current) and runs on every delivery, duplicates included: the
transitions are idempotent, so a retry after a failure here (the webhook answers 503) still
takes the missing steps. It re-fetches the invoice from Stripe:
- `invoice.payment_failed` announces `payment.failed` for that attempt, then starts or moves
  the invoice's sequence (`notice` at the first failure, `downgraded` at the final one);
- `invoice.paid` ends it (`recovered`); without an open sequence it reads nothing from Stripe;
- a subscription event re-reads each open sequence of the subscription (a status change to
  `unpaid` or `canceled` is the downgrade even when the invoice's own event is late).

`run_due` is the timed job (`reminder`, `final_warning`, `recovery_offer`). Exactly one runner
is meant to call it (the reporter's scheduler leader); a second one at the same time still takes
each step once (the repository's lock). Before a timed step it re-fetches the invoice, so a
payment whose webhook has not arrived yet ends the sequence instead of sending a reminder. When
Stripe cannot be read that sequence waits for the next run.

The downgrade itself is the catalog's payment policy for the subscription's new status
(`unpaid`, `canceled`: their `plan`; a subscription Stripe leaves `past_due`: `past_due.then`),
which the entitlement decisions already apply; nothing is deleted, usage keeps counting, and a
payment makes the subscription active again, which restores the plan.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from meterline.catalog import Catalog
from meterline.clock import Clock
from meterline.dunning.model import (
    DunningPolicy,
    InvoiceFacts,
    Outcome,
    Sequence,
    Situation,
    observe,
    take_due,
)
from meterline.dunning.notices import JSON, payment_failed, state, step_notification
from meterline.dunning.repository import DunningRepository
from meterline.entitlements import CustomerRepository, SubscriptionRepository
from meterline.errors import Unavailable
from meterline.notify.events import Notification
from meterline.stripe.webhook_events import SUBSCRIPTION_EVENTS, StripeEvent

log = logging.getLogger("meterline.dunning")


class InvoiceReader(Protocol):
    def facts(self, invoice_id: str) -> InvoiceFacts | None:
        """The invoice as Stripe holds it now, None if unknown; raises Unavailable."""
        ...


@dataclass(frozen=True, slots=True)
class DunningPorts:
    repository: DunningRepository
    invoices: InvoiceReader
    customers: CustomerRepository
    subscriptions: SubscriptionRepository
    catalog_of: Callable[[int], Catalog]
    policy: DunningPolicy
    clock: Clock


class Dunning:
    def __init__(self, ports: DunningPorts) -> None:
        self._p = ports

    def on_event(self, event: StripeEvent) -> None:
        """Apply one verified event (module docstring); raises Unavailable when Stripe cannot
        be read (nothing is stored, the webhook answers 503 and Stripe retries)."""
        at = datetime.fromtimestamp(event.created, UTC)
        if event.type == "invoice.payment_failed" and isinstance(event.object.get("id"), str):
            self._observe(event.object["id"], at, event.object)
        elif event.type == "invoice.paid" and isinstance(event.object.get("id"), str):
            if self._p.repository.has_open(event.object["id"]):  # else nothing to end
                self._observe(event.object["id"], at)
        elif event.type in SUBSCRIPTION_EVENTS and event.subscription_id is not None:
            for _tenant, invoice in self._p.repository.open_for(event.subscription_id):
                self._observe(invoice, at)

    def run_due(self) -> int:
        """Take the timed steps that are due now; returns how many sequences moved. A sequence
        that fails (Stripe away, a database error) is logged and stays due for the next run."""
        now, moved = self._p.clock.now(), 0
        for tenant_id, invoice_id in self._p.repository.due(now):
            try:
                facts = self._p.invoices.facts(invoice_id)
                moved += self._timed(tenant_id, invoice_id, facts, now)
            except Unavailable as exc:
                log.warning("dunning: invoice %s not read: %s", invoice_id, exc)
            except Exception:  # one sequence's failure must not hold back the others
                log.exception("dunning: the due step of invoice %s failed", invoice_id)
        return moved

    def current(self, tenant_id: int, customer: str) -> Sequence | None:
        return self._p.repository.current(tenant_id, customer)

    def shown(self, tenant_id: int, customer: str) -> JSON | None:
        """The customer's open sequence as the billing API shows it (`notices.state`)."""
        seq = self.current(tenant_id, customer)
        return None if seq is None else state(seq, self._p.policy)

    def _observe(self, invoice_id: str, at: datetime, failed: JSON | None = None) -> None:
        """`failed`: the body of the `invoice.payment_failed` being applied, announced."""
        facts = self._p.invoices.facts(invoice_id)
        if facts is None:
            return
        where = self._situation(facts)
        if where is None:
            return
        announced = []
        if failed is not None:
            attempt = as_reported(facts, failed)
            announced.append(payment_failed(where.tenant_id, where.customer, attempt, at))

        def change(seq: Sequence | None) -> tuple[Sequence | None, list[Notification]]:
            outcome = observe(seq, facts, where, at, self._p.policy)
            return outcome.sequence, announced + self._notices(outcome)

        self._p.repository.change(where.tenant_id, facts.id, change)

    def _timed(
        self, tenant_id: int, invoice_id: str, facts: InvoiceFacts | None, now: datetime
    ) -> int:
        where = None if facts is None else self._situation(facts)

        def change(seq: Sequence | None) -> tuple[Sequence | None, list[Notification]]:
            if seq is None:
                return None, []
            seen = (
                Outcome(seq)
                if facts is None or where is None
                else observe(seq, facts, where, now, self._p.policy)
            )
            assert seen.sequence is not None
            due = take_due(seen.sequence, now, self._p.policy)
            return due.sequence, self._notices(seen) + self._notices(due)

        before = self._p.repository.get(tenant_id, invoice_id)
        after = self._p.repository.change(tenant_id, invoice_id, change)
        return int(after != before)

    def _notices(self, outcome: Outcome) -> list[Notification]:
        seq = outcome.sequence
        if seq is None:
            return []
        return [step_notification(seq, step, self._p.policy) for step in outcome.taken]

    def _situation(self, facts: InvoiceFacts) -> Situation | None:
        customer = self._p.customers.by_stripe_id(facts.stripe_customer)
        if customer is None:
            return None
        sub = self._p.subscriptions.get(customer.tenant_id, customer.id)
        status = None if sub is None else sub.status
        fallback = fallback_plan(self._p.catalog_of(customer.tenant_id), status)
        plan = None if sub is None else sub.plan
        return Situation(customer.tenant_id, customer.id, status, plan, fallback)


def as_reported(facts: InvoiceFacts, body: JSON) -> InvoiceFacts:
    """The invoice as a failure's event reported it: its attempt count and next retry from
    the body (so a late event announces its own attempt), the rest as Stripe says it now. A
    body field of the wrong type is taken from Stripe's answer instead."""
    count, nxt = body.get("attempt_count"), body.get("next_payment_attempt", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return facts
    if nxt is None:
        return replace(facts, attempt_count=count, next_payment_attempt=None)
    if isinstance(nxt, bool) or not isinstance(nxt, int) or not 0 < nxt < 2**40:
        return replace(facts, attempt_count=count)
    return replace(
        facts, attempt_count=count, next_payment_attempt=datetime.fromtimestamp(nxt, UTC)
    )


def fallback_plan(catalog: Catalog, status: str | None) -> str | None:
    """The plan the catalog's payment policy gives a subscription whose payments failed for
    good, in `status` (`past_due` when Stripe leaves it so); the default plan without one."""
    policies = catalog.payment_policies
    chosen: str | None = None
    if status == "past_due" and policies.past_due is not None:
        chosen = policies.past_due.then
    elif status in ("unpaid", "canceled", "paused"):
        policy = {"unpaid": policies.unpaid, "canceled": policies.canceled,
                  "paused": policies.paused}[status]  # fmt: skip
        chosen = None if policy is None else policy.plan
    if chosen is None:
        default = catalog.default_plan
        return None if default is None else default.key
    return chosen
