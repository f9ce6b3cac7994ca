"""Creating a subscription invoices its first period at once, as Stripe does
(shared/STRIPE-BILLING.md, f and g).

`POST /v1/subscriptions` and Checkout's subscription mode both come here: the subscription is
made (`subscriptions.create`), then its first invoice (`billing_reason: subscription_create`)
holds each licensed item for the current period, in advance; metered items bill nothing yet
(usage is billed in arrears when the period closes, `invoices.close_period`, which also bills
the licensed items of the next period in advance). The invoice's own `period_start` and
`period_end` are both the creation time (Stripe: "the usage period during which invoice items
were added ... looks back one period"; there is none yet); each line's `period` is the current
period it pays for. A trial's invoice holds the same lines for
0 ("an immediate invoice is still created, but for $0"). The invoice is finalized and charged
to the customer's default card: paid, or, when the card fails charges
(`pm_card_chargeCustomerFail`) or there is none and something is due, left `open` with the
subscription `incomplete` (Stripe's status after a failed first payment); paying the invoice
makes it `active`. Automatic retries are for renewals, not first invoices, and
`incomplete_expired` after 23 h is not emulated. Events after `customer.subscription.created`:
`invoice.created`, `invoice.finalized`, then `invoice.paid` or `invoice.payment_failed` (and
`customer.subscription.updated` to `incomplete`).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from . import invoices, payment_methods, subscriptions
from .core import Call, Emulator

JSON = dict[str, Any]


def create(emu: Emulator, call: Call) -> JSON:
    """POST /v1/subscriptions: the subscription, then its first invoice."""
    sub = subscriptions.create(emu, call)
    first_invoice(emu, sub)
    return sub


def first_invoice(emu: Emulator, sub: JSON) -> JSON:
    """Invoice `sub`'s first period and attempt payment; answers the invoice."""
    items = subscriptions.items_list(sub)
    lines = [_line(emu, sub, item) for item in items if _licensed(item)]
    # an invoice's period is the usage period it looks back on: none yet, so both are now
    now = emu.now()
    invoice = invoices.new_invoice(emu, sub, lines, now, now, "subscription_create")
    emu.store.put("invoice", invoice)
    sub["latest_invoice"] = invoice["id"]
    emu.emit("invoice.created", invoice)
    invoices.open_invoice(emu, invoice)
    if invoice["amount_due"] > 0 and payment_methods.charge_fails(emu, sub["customer"]):
        return _declined(emu, sub, invoice)
    return invoices.pay(emu, invoice)


def _licensed(item: JSON) -> bool:
    return bool(item["price"]["recurring"]["usage_type"] == "licensed")


def _line(emu: Emulator, sub: JSON, item: JSON) -> JSON:
    start, end = item["current_period_start"], item["current_period_end"]
    quantity = Decimal(item["quantity"] or 1)
    if sub["status"] == "trialing":
        return invoices.line(emu, item, sub, 0, quantity, start, end)
    return invoices.charged_line(emu, item, sub, quantity, start, end)


def _declined(emu: Emulator, sub: JSON, invoice: JSON) -> JSON:
    """The first payment failed: the invoice stays open, no retry is scheduled, and the
    subscription is `incomplete` until the invoice is paid."""
    invoice.update(attempt_count=1, attempted=True, next_payment_attempt=None)
    emu.emit("invoice.payment_failed", invoice, {"attempt_count": 0})
    before = copy.deepcopy(sub)
    sub["status"] = "incomplete"
    subscriptions.emit_updated(emu, before, sub)
    return invoice
