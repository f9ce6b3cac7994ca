"""Plan changes with prorations, and invoice previews (shared/STRIPE-BILLING.md, e).

A licensed item whose price or quantity changes mid-period is prorated to the second: a credit
for the old price over the rest of the period and a debit for the new one, each
`full amount x (period_end - t) / (period_end - period_start)` rounded once per line (half up by
default, `amount_rounding`; Stripe leaves it unverified); an item added is a debit, an item
deleted a credit. Metered items are never prorated. `proration_behavior`:
`create_prorations` (default) keeps the lines for the next invoice, `always_invoice` invoices
them at once (paid unless the customer's default card fails charges), `none` drops them.
`proration_date` (within the current period) prices them as of that instant, so an update
with the `proration_date` of a preview charges exactly what the preview showed.

`POST /v1/invoices/create_preview` answers the invoice a change would make, never stored
(`billing_reason: upcoming`): with `always_invoice`, the prorations alone (what is invoiced
now); otherwise the next invoice: pending and new prorations, the current period's metered
usage so far, and the licensed items in advance for the next period.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from . import invoices, payment_methods, pricing, subscriptions
from .core import Call, Emulator
from .errors import invalid

JSON = dict[str, Any]
BEHAVIORS = ("create_prorations", "always_invoice", "none")
Change = tuple[JSON | None, JSON | None]


def update(emu: Emulator, call: Call) -> JSON:
    """POST /v1/subscriptions/{id}: the change, then its prorations as
    `proration_behavior` says; fires customer.subscription.updated."""
    sub = subscriptions.live(emu, call.arg("id"))
    p = call.params
    behavior = _behavior(p.str("proration_behavior"), "proration_behavior")
    at = _proration_date(emu, sub, p.int("proration_date"), "proration_date")
    before = copy.deepcopy(sub)
    changed = subscriptions.apply_update(emu, sub, p)
    lines = prorations(emu, sub, changed, at)
    if behavior == "create_prorations":
        sub.setdefault("_pending_prorations", []).extend(lines)
    subscriptions.emit_updated(emu, before, sub)
    if behavior == "always_invoice" and lines:
        _invoice_now(emu, sub, lines)
    return sub


def preview(emu: Emulator, call: Call) -> JSON:
    """POST /v1/invoices/create_preview: `customer`, `subscription`, `subscription_details`
    (`items`, `proration_behavior`, `proration_date`, `cancel_at_period_end`)."""
    p = call.params
    sub = copy.deepcopy(emu.store.get("subscription", p.req("subscription"), param="subscription"))
    customer = p.str("customer")
    if customer is not None and customer != sub["customer"]:
        raise invalid("The subscription does not belong to that customer.", "customer")
    details = p.sub("subscription_details")
    param = "subscription_details[proration_behavior]"
    behavior = _behavior(details.str("proration_behavior"), param)
    at = _proration_date(
        emu, sub, details.int("proration_date"), "subscription_details[proration_date]"
    )
    changed = subscriptions.apply_update(emu, sub, details)
    lines = [] if behavior == "none" else prorations(emu, sub, changed, at)
    if behavior != "always_invoice":
        lines = sub.pop("_pending_prorations", []) + lines + invoices.next_lines(emu, sub)
    return _preview_invoice(emu, sub, lines)


def _behavior(value: str | None, param: str) -> str:
    behavior = value or "create_prorations"
    if behavior not in BEHAVIORS:
        raise invalid(f"Invalid {param}: must be one of {', '.join(BEHAVIORS)}", param)
    return behavior


def _proration_date(emu: Emulator, sub: JSON, given: int | None, param: str) -> int:
    if given is None:
        return emu.now()
    items = subscriptions.items_list(sub)
    start = min(i["current_period_start"] for i in items)
    end = max(i["current_period_end"] for i in items)
    if not start <= given <= end:
        raise invalid("The proration_date must be within the current billing period.", param)
    return given


def prorations(emu: Emulator, sub: JSON, changed: list[Change], at: int) -> list[JSON]:
    """The credit and debit lines of `changed` licensed items, as of `at`."""
    lines = []
    for before, after in changed:
        if before is not None and _licensed(before) and _differs(before, after):
            lines.append(_line(emu, sub, before, at, credit=True))
        if after is not None and _licensed(after) and _differs(after, before):
            lines.append(_line(emu, sub, after, at, credit=False))
    return lines


def _licensed(item: JSON) -> bool:
    return bool(item["price"]["recurring"]["usage_type"] == "licensed")


def _differs(item: JSON, other: JSON | None) -> bool:
    if other is None:
        return True
    return (item["price"]["id"], item["quantity"]) != (other["price"]["id"], other["quantity"])


def _line(emu: Emulator, sub: JSON, item: JSON, at: int, credit: bool) -> JSON:
    start, end = item["current_period_start"], item["current_period_end"]
    price, quantity = item["price"], Decimal(item["quantity"] or 1)
    full = pricing.line_amount(price, quantity, emu.config).amount
    share = Decimal(full) * Decimal(max(end - at, 0)) / Decimal(end - start)
    amount = pricing.round_amount(share, emu.config)
    line = invoices.line(emu, item, sub, amount, quantity, at, end)
    verb = "Unused time on" if credit else "Remaining time on"
    line["amount"] = -amount if credit else amount
    line["description"] = f"{verb} {quantity} x {price['product']} after {at}"
    line["parent"]["subscription_item_details"]["proration"] = True
    return line


def _invoice_now(emu: Emulator, sub: JSON, lines: list[JSON]) -> JSON:
    start = min(line["period"]["start"] for line in lines)
    end = max(line["period"]["end"] for line in lines)
    invoice = invoices.new_invoice(emu, sub, lines, start, end, "subscription_update")
    emu.store.put("invoice", invoice)
    sub["latest_invoice"] = invoice["id"]
    emu.emit("invoice.created", invoice)
    fails = payment_methods.charge_fails(emu, sub["customer"])
    return invoices.finalize_invoice(emu, invoice, "fail" if fails else "succeed")


def _preview_invoice(emu: Emulator, sub: JSON, lines: list[JSON]) -> JSON:
    start = min((line["period"]["start"] for line in lines), default=emu.now())
    end = max((line["period"]["end"] for line in lines), default=emu.now())
    invoice = invoices.new_invoice(emu, sub, lines, start, end, "upcoming")
    invoice["id"] = None
    for line in lines:
        line["invoice"] = None
    items = subscriptions.items_list(sub)
    invoice["next_payment_attempt"] = max(i["current_period_end"] for i in items)
    return invoice
