"""What the sequence tells: its state as the API shows it, and the outbound notifications.

One shape for both (`state`): `GET /v1/customers/{c}/billing` shows it as `dunning`, and every
`dunning.*` event carries it as `data` with the `step` it announces. Every notification has a
key made of the invoice and the step (or the failed attempt), so writing it again keeps one
message with one `webhook-id`: a step announced twice is delivered once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from meterline.dunning.model import DunningPolicy, InvoiceFacts, Sequence
from meterline.notify.events import Notification, iso

JSON = dict[str, Any]
STEP_EVENTS = {
    "notice": "dunning.notice",
    "reminder": "dunning.reminder",
    "final_warning": "dunning.final_warning",
    "downgraded": "dunning.downgraded",
    "recovery_offer": "dunning.recovery_offer",
    "recovered": "dunning.recovered",
}


def state(seq: Sequence, policy: DunningPolicy) -> JSON:
    """The sequence as the billing API and the events show it."""
    nxt = seq.next_step(policy)
    return {
        "invoice": seq.invoice_id,
        "subscription": seq.subscription_id,
        "step": seq.step,
        "since": iso(seq.started_at),
        "steps": {step: iso(at) for step, at in seq.steps.items()},
        "update_url": seq.update_url,
        "amount_due": seq.amount_due,
        "currency": seq.currency,
        "attempt_count": seq.attempt_count,
        "next_payment_attempt": _iso(seq.next_payment_attempt),
        "next_step": None if nxt is None else nxt[0],
        "next_step_at": None if nxt is None else iso(nxt[1]),
        "plan": seq.plan,
        "downgraded_to": seq.downgraded_to,
        "restored": seq.restored,
        "ended_at": _iso(seq.ended_at),
    }


def step_notification(seq: Sequence, step: str, policy: DunningPolicy) -> Notification:
    """`dunning.<step>` for a step just taken (`recovered` when a payment ended it)."""
    at = seq.ended_at if step == "recovered" else seq.steps[step]
    assert at is not None
    data = {"customer": seq.customer, **state(seq, policy), "step": step}
    return Notification(
        seq.tenant_id, STEP_EVENTS[step], at, data, seq.customer, key=f"{seq.invoice_id}:{step}"
    )


def payment_failed(
    tenant_id: int, customer: str, invoice: InvoiceFacts, failed_at: datetime
) -> Notification:
    """`payment.failed` for one failed attempt of `invoice` (as the webhook reported it)."""
    data = {
        "customer": customer,
        "invoice": invoice.id,
        "subscription": invoice.subscription_id,
        "attempt_count": invoice.attempt_count,
        "amount_due": invoice.amount_due,
        "currency": invoice.currency,
        "next_payment_attempt": _iso(invoice.next_payment_attempt),
        "final": invoice.next_payment_attempt is None,
        "update_url": invoice.update_url,
    }
    key = f"{invoice.id}:attempt:{invoice.attempt_count}"
    return Notification(tenant_id, "payment.failed", failed_at, data, customer, key=key)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else iso(at)
