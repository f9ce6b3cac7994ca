"""The dunning sequence of one failed invoice, as pure data and transitions (no I/O).

A sequence starts at an invoice's first failed payment and walks five steps, each taken once:

| step | when |
|---|---|
| `notice` | the first failure: a notice with the link that pays the invoice |
| `reminder` | `reminder_after` (3 days) after the first failure: more urgent |
| `final_warning` | `final_warning_before` (2 days) before the final automatic retry |
| `downgraded` | the final retry failed (or the subscription is `unpaid`/`canceled`) |
| `recovery_offer` | `recovery_after` (7 days) after the downgrade: paying restores the plan |

A payment ends the sequence at any step (`recovered`, and the plan is restored because the
subscription is active again); a voided or uncollectible invoice ends it without a message.

Two inputs move it. `observe` takes what Stripe says of the invoice now (re-fetched, never the
webhook body: deliveries may come twice or in any order, the current state is what counts) and
takes the event-driven steps. `take_due` takes the timed steps whose time has come; the job
calls it. Both return the steps they took; a step already in `steps` is never taken again, and
a step that a later one has overtaken (a reminder after the final warning, a warning after the
downgrade) is skipped.

Which retry is the final one is not on the invoice: Stripe's retry policy (its number of
retries, `DunningPolicy.retries`) says it. When the invoice's `attempt_count` has reached it,
the retry at `next_payment_attempt` is the final one; when it is past it and no retry is
scheduled, the final one failed. (No retry scheduled alone proves nothing: Stripe schedules
none without a payment method, and still ends the subscription when its retry window ends,
which the status change then tells.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType

STEPS = ("notice", "reminder", "final_warning", "downgraded", "recovery_offer")
ENDING_STATUSES = frozenset({"paid", "void", "uncollectible"})
FINAL_STATUSES = frozenset({"unpaid", "canceled"})


@dataclass(frozen=True, slots=True)
class DunningPolicy:
    """When the timed steps come, and how many automatic retries Stripe makes."""

    reminder_after: timedelta = timedelta(days=3)
    final_warning_before: timedelta = timedelta(days=2)
    recovery_after: timedelta = timedelta(days=7)
    retries: int = 4


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    """What Stripe says of an invoice now. `update_url` pays it (its hosted invoice page)."""

    id: str
    stripe_customer: str
    subscription_id: str | None
    status: str
    attempt_count: int
    next_payment_attempt: datetime | None
    update_url: str | None
    amount_due: int
    currency: str


@dataclass(frozen=True, slots=True)
class Situation:
    """Meterline's side when an invoice is observed: whose it is, the subscription's status
    (as last synced from Stripe), its plan, and the plan the catalog's policy falls back to."""

    tenant_id: int
    customer: str
    status: str | None
    plan: str | None
    fallback_plan: str | None


@dataclass(frozen=True, slots=True)
class Sequence:
    """One invoice's sequence. `steps` maps each step taken to when; `ended` is `paid`,
    `void` or `uncollectible` once over."""

    tenant_id: int
    customer: str
    invoice_id: str
    subscription_id: str | None
    plan: str | None
    started_at: datetime
    attempt_count: int
    next_payment_attempt: datetime | None
    update_url: str | None
    amount_due: int
    currency: str
    steps: Mapping[str, datetime] = field(default_factory=lambda: MappingProxyType({}))
    downgraded_to: str | None = None
    ended: str | None = None
    ended_at: datetime | None = None

    @property
    def step(self) -> str:
        """Where it stands: the last step taken, or `recovered` / `ended` once over."""
        if self.ended is not None:
            return "recovered" if self.ended == "paid" else "ended"
        return max(self.steps, key=STEPS.index) if self.steps else "started"

    @property
    def restored(self) -> bool:
        """Paid after the downgrade: the plan came back."""
        return self.ended == "paid" and "downgraded" in self.steps

    def next_step(self, policy: DunningPolicy) -> tuple[str, datetime] | None:
        """The next timed step and its time; None when none is left."""
        if self.ended is not None:
            return None
        if "downgraded" in self.steps:
            if "recovery_offer" in self.steps:
                return None
            return "recovery_offer", self.steps["downgraded"] + policy.recovery_after
        due = [(at, STEPS.index(s), s) for s, at in self._before_downgrade(policy)]
        return None if not due else (min(due)[2], min(due)[0])

    def _before_downgrade(self, policy: DunningPolicy) -> list[tuple[str, datetime]]:
        found = []
        if "final_warning" not in self.steps:
            if "reminder" not in self.steps:
                found.append(("reminder", self.started_at + policy.reminder_after))
            final = self.next_payment_attempt
            if self.attempt_count >= policy.retries and final is not None:
                found.append(("final_warning", final - policy.final_warning_before))
        return found


@dataclass(frozen=True, slots=True)
class Outcome:
    sequence: Sequence | None
    taken: tuple[str, ...] = ()
    """Steps taken by this transition, in order (`recovered` when a payment ended it)."""


def observe(
    seq: Sequence | None,
    facts: InvoiceFacts,
    where: Situation,
    at: datetime,
    policy: DunningPolicy,
) -> Outcome:
    """Apply what Stripe says of the invoice now (module docstring)."""
    if facts.status in ENDING_STATUSES:
        if seq is None or seq.ended is not None:
            return Outcome(seq)
        ended = replace(seq, ended=facts.status, ended_at=at)
        return Outcome(ended, ("recovered",) if facts.status == "paid" else ())
    if facts.status != "open" or facts.attempt_count < 1:
        return Outcome(seq)
    if seq is not None and seq.ended is not None:
        return Outcome(seq)
    current = _refreshed(seq, facts, where, at)
    taken: list[str] = []
    if "notice" not in current.steps:
        current = _take(current, "notice", at)
        taken.append("notice")
    spent = facts.next_payment_attempt is None and facts.attempt_count > policy.retries
    final = spent or where.status in FINAL_STATUSES
    if final and "downgraded" not in current.steps:
        current = replace(_take(current, "downgraded", at), downgraded_to=where.fallback_plan)
        taken.append("downgraded")
    return Outcome(current, tuple(taken))


def take_due(seq: Sequence, now: datetime, policy: DunningPolicy) -> Outcome:
    """Take every timed step whose time has come, in order, each at `now`."""
    taken: list[str] = []
    nxt = seq.next_step(policy)
    while nxt is not None and nxt[1] <= now:
        seq = _take(seq, nxt[0], now)
        taken.append(nxt[0])
        nxt = seq.next_step(policy)
    return Outcome(seq, tuple(taken))


def _refreshed(
    seq: Sequence | None, facts: InvoiceFacts, where: Situation, at: datetime
) -> Sequence:
    if seq is None:
        return Sequence(
            where.tenant_id, where.customer, facts.id, facts.subscription_id, where.plan, at,
            facts.attempt_count, facts.next_payment_attempt, facts.update_url, facts.amount_due,
            facts.currency,
        )  # fmt: skip
    if facts.attempt_count < seq.attempt_count:
        return seq  # an older view of the invoice than the one already applied
    return replace(
        seq,
        attempt_count=facts.attempt_count,
        next_payment_attempt=facts.next_payment_attempt,
        update_url=facts.update_url or seq.update_url,
        amount_due=facts.amount_due,
    )


def _take(seq: Sequence, step: str, at: datetime) -> Sequence:
    return replace(seq, steps=MappingProxyType({**seq.steps, step: at}))
