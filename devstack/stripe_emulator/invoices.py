"""Invoices for closed billing periods, and payment outcomes.

Closing a period (control API) bills metered items for the period that ended, using the
meter event summaries Stripe would see at that moment (only processed events count), and
licensed items in advance for the new period; then it moves every item to its next period.
A failed payment leaves the invoice `open` and the subscription `past_due`; after
`unpaid_after` failed attempts (or a final failure) it becomes `unpaid`. Paying an open
invoice makes the subscription `active` again.

Each invoice has `parent.subscription_details.subscription`, and each line `period{start,end}`,
`quantity`, `amount` and `pricing.price_details`; amounts follow `pricing.py`. Once finalized
it has a `hosted_invoice_url` (null while a draft, as Stripe says): the emulator's page for it
(`hosted_invoice.py`); `invoice_pdf` stays null (no PDFs are made). API:
`GET /v1/invoices` (`customer`, `subscription`, `status`), `GET /v1/invoices/{id}`,
`GET /v1/invoices/{id}/lines`, `POST /v1/invoices/{id}/pay` (402 with a failing card).

Payment retries: a period's invoice is charged to the customer's default card at once; a card
that fails charges (`pm_card_chargeCustomerFail`) leaves it `open` with `next_payment_attempt`
`payment_retry_days` later (3, 5, 6, 7 days by default; "4 retries over 21 days" is all Stripe
says, and Smart Retries' own choice of times is not emulated) and the subscription `past_due`;
each retry is made when the clock is advanced past it (a new default card is charged then);
after the last the subscription becomes `final_payment_failure` (`unpaid`, or `canceled`).
Paying by hand with a failing card answers 402 and does not count as an attempt. There is no
finalization grace period: close with `finalize=false`, then `/finalize`, to model one.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any, Literal

from . import meters, payment_methods, periods, pricing, schedules, subscriptions
from .config import DAY
from .core import Call, Emulator
from .errors import StripeError, invalid
from .listing import newest_first, paginate
from .state import new_id

JSON = dict[str, Any]
Payment = Literal["succeed", "fail"]


def close_period(
    emu: Emulator, sub_id: str, payment: Payment = "succeed", finalize: bool = True
) -> JSON:
    """Invoice the subscription's current period and move its items to the next one.

    The clock is first advanced to the period end when it is earlier. Fires invoice.created,
    then (when `finalize`) invoice.finalized and invoice.paid or invoice.payment_failed, and
    customer.subscription.updated (or .deleted when it was set to cancel at period end).
    """
    sub = emu.store.get("subscription", sub_id)
    if sub["status"] in ("canceled", "incomplete_expired", "paused"):
        raise invalid(f"Subscription {sub_id} is {sub['status']}; no period to close.", "id")
    before = copy.deepcopy(sub)
    items = subscriptions.items_list(sub)
    period_end = max(item["current_period_end"] for item in items)
    if emu.clock.now() < period_end:
        emu.clock.advance(period_end - emu.clock.now())
    schedules.enter_next_phase(emu, sub, period_end)
    items = subscriptions.items_list(sub)
    lines = sub.pop("_pending_prorations", []) + next_lines(emu, sub)
    sub.pop("_retired", None)
    period_start = min(item["current_period_start"] for item in items)
    ending = bool(sub["cancel_at_period_end"])
    if not ending:
        _advance_items(sub, items)
    invoice = new_invoice(emu, sub, lines, period_start, period_end, "subscription_cycle")
    emu.store.put("invoice", invoice)
    sub["latest_invoice"] = invoice["id"]
    emu.emit("invoice.created", invoice)
    if ending:
        subscriptions.cancel_now(emu, sub)
    else:
        sub["status"] = "active" if sub["status"] == "trialing" else sub["status"]
        subscriptions.emit_updated(emu, before, sub)
    if finalize:
        finalize_invoice(emu, invoice, payment)
    return invoice


def next_lines(emu: Emulator, sub: JSON) -> list[JSON]:
    """The lines closing the current period now would bill: metered usage of the period
    (items removed during it too), licensed items in advance for the next period."""
    retired = sub.get("_retired", [])
    return [
        line for item in retired + subscriptions.items_list(sub) for line in _lines(emu, sub, item)
    ]


def _advance_items(sub: JSON, items: list[JSON]) -> None:
    for item in items:
        item["_index"] += 1
        subscriptions.set_period(item)
    sub["items"]["data"] = items


def _lines(emu: Emulator, sub: JSON, item: JSON) -> list[JSON]:
    price = item["price"]
    start: int = item["current_period_start"]
    end: int = item["current_period_end"]
    if price["recurring"]["usage_type"] == "metered":
        since: int = max(start, item.get("_billed_from", start))
        until: int = item.get("_billed_until", end)
        trial = item["_index"] < 0  # usage accrued during a trial is not charged
        quantity = Decimal(0) if trial else _usage(emu, price, sub["customer"], since, until)
        return [charged_line(emu, item, sub, quantity, start, end)]
    if sub["cancel_at_period_end"]:
        return []
    recurring = price["recurring"]
    next_period = periods.period(
        item["_anchor"], recurring["interval"], recurring["interval_count"], item["_index"] + 1
    )
    return [charged_line(emu, item, sub, Decimal(item["quantity"] or 1), *next_period)]


def _usage(emu: Emulator, price: JSON, customer: str, start: int, end: int) -> Decimal:
    meter = emu.store.find("billing.meter", price["recurring"]["meter"] or "")
    if meter is None:
        return Decimal(0)
    events = meters.processed_events(emu, meter["id"], customer, start, end)
    formula = meter["default_aggregation"]["formula"]
    return Decimal(str(meters.aggregate(formula, events, emu.config.last_tie_break)))


def charged_line(
    emu: Emulator, item: JSON, sub: JSON, usage: Decimal, start: int, end: int
) -> JSON:
    """One line: `usage` priced as the item's price says (per unit, tiers or packages)."""
    charged = pricing.line_amount(item["price"], usage, emu.config)
    return line(emu, item, sub, charged.amount, charged.quantity, start, end)


def line(
    emu: Emulator, item: JSON, sub: JSON, amount: int, quantity: Decimal, start: int, end: int
) -> JSON:
    """An invoice line of `item` charging `amount` for `quantity` over [start, end]."""
    price = item["price"]
    return {
        "id": new_id("il", 24),
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": price.get("nickname") or f"{quantity} x {price['product']}",
        "livemode": False,
        "metadata": {},
        "period": {"start": start, "end": end},
        "quantity": int(quantity) if quantity == quantity.to_integral() else float(quantity),
        "pricing": {
            "type": "price_details",
            "price_details": {"price": price["id"], "product": price["product"]},
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        "parent": {
            "type": "subscription_item_details",
            "subscription_item_details": {
                "subscription": sub["id"],
                "subscription_item": item["id"],
            },
        },
    }


def new_invoice(
    emu: Emulator, sub: JSON, lines: list[JSON], start: int, end: int, reason: str
) -> JSON:
    """A draft invoice of `sub` holding `lines` (not stored)."""
    invoice_id = new_id("in", 24)
    total = sum(line["amount"] for line in lines)
    for line in lines:
        line["invoice"] = invoice_id
    return {
        "id": invoice_id,
        "object": "invoice",
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "amount_due": total,
        "amount_paid": 0,
        "amount_remaining": total,
        "attempt_count": 0,
        "next_payment_attempt": None,
        "attempted": False,
        "billing_reason": reason,
        "collection_method": "charge_automatically",
        "created": emu.now(),
        "currency": sub["currency"],
        "customer": sub["customer"],
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "number": None,
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"subscription": sub["id"], "metadata": dict(sub["metadata"])},
        },
        "period_start": start,
        "period_end": end,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "paid_at": None,
            "voided_at": None,
            "marked_uncollectible_at": None,
        },
        "subtotal": total,
        "total": total,
    }


def finalize_invoice(emu: Emulator, invoice: JSON, payment: Payment = "succeed") -> JSON:
    """Finalize a draft invoice and attempt payment; fires invoice.finalized and the outcome."""
    open_invoice(emu, invoice)
    if payment == "fail":
        return fail(emu, invoice)
    return collect(emu, invoice)


def open_invoice(emu: Emulator, invoice: JSON) -> JSON:
    """Finalize a draft without a payment attempt: `open`, numbered, its hosted page linked;
    fires invoice.finalized."""
    if invoice["status"] != "draft":
        raise invalid(f"Invoice {invoice['id']} is {invoice['status']}, not draft.", "id")
    invoice["status"] = "open"
    invoice["number"] = f"EMU-{len(emu.store.table('invoice')):06d}"
    invoice["status_transitions"]["finalized_at"] = emu.now()
    invoice["hosted_invoice_url"] = f"{emu.base_url}/invoice/{invoice['id']}"
    emu.emit("invoice.finalized", invoice)
    return invoice


def collect(emu: Emulator, invoice: JSON) -> JSON:
    """An automatic payment attempt with the customer's default card: paid, or declined."""
    if payment_methods.charge_fails(emu, invoice["customer"]):
        return decline(emu, invoice)
    return pay(emu, invoice)


def decline(emu: Emulator, invoice: JSON) -> JSON:
    """A declined automatic attempt: the next one is scheduled `payment_retry_days` later
    (`past_due` meanwhile); after the last, the subscription becomes `final_payment_failure`."""
    invoice["attempt_count"] += 1
    invoice["attempted"] = True
    schedule = emu.config.payment_retry_days
    spent = invoice["attempt_count"] > len(schedule)
    next_at = None if spent else emu.now() + int(schedule[invoice["attempt_count"] - 1] * DAY)
    invoice["next_payment_attempt"] = next_at
    emu.emit("invoice.payment_failed", invoice, {"attempt_count": invoice["attempt_count"] - 1})
    if not spent:
        _set_status(emu, invoice, "past_due", ("active", "trialing", "past_due"))
    elif emu.config.final_payment_failure == "unpaid":
        _set_status(emu, invoice, "unpaid", ("active", "trialing", "past_due"))
    else:
        sub = _subscription_of(emu, invoice)
        if sub is not None and sub["status"] != "canceled":
            subscriptions.cancel_now(emu, sub)
    return invoice


def retry_due(emu: Emulator) -> list[JSON]:
    """Every automatic retry whose `next_payment_attempt` has come, oldest first."""
    now = emu.now()
    due = [
        i
        for i in emu.store.table("invoice").values()
        if i["status"] == "open" and (i.get("next_payment_attempt") or now + 1) <= now
    ]
    return [collect(emu, i) for i in sorted(due, key=lambda i: i["next_payment_attempt"])]


def pay(emu: Emulator, invoice: JSON) -> JSON:
    """Mark an open invoice paid; a past_due, unpaid or incomplete subscription becomes
    active."""
    if invoice["status"] != "open":
        raise invalid(
            f"Invoice {invoice['id']} is {invoice['status']}; only open invoices can be paid.", "id"
        )
    previous = {"status": "open", "amount_paid": invoice["amount_paid"]}
    invoice.update(
        status="paid", amount_paid=invoice["amount_due"], amount_remaining=0, attempted=True
    )
    invoice["attempt_count"] += 1
    invoice["next_payment_attempt"] = None
    invoice["status_transitions"]["paid_at"] = emu.now()
    emu.emit("invoice.paid", invoice, previous)
    _set_status(emu, invoice, "active", ("past_due", "unpaid", "incomplete"))
    return invoice


def fail(emu: Emulator, invoice: JSON, final: bool = False, unpaid_after: int = 2) -> JSON:
    """Record a failed attempt: past_due, then unpaid after `unpaid_after` attempts or `final`."""
    if invoice["status"] != "open":
        raise invalid(
            f"Invoice {invoice['id']} is {invoice['status']}; only open invoices can fail.", "id"
        )
    invoice["attempt_count"] += 1
    invoice["attempted"] = True
    emu.emit("invoice.payment_failed", invoice, {"attempt_count": invoice["attempt_count"] - 1})
    unpaid = final or invoice["attempt_count"] >= unpaid_after
    _set_status(
        emu, invoice, "unpaid" if unpaid else "past_due", ("active", "trialing", "past_due")
    )
    return invoice


def _subscription_of(emu: Emulator, invoice: JSON) -> JSON | None:
    return emu.store.find("subscription", invoice["parent"]["subscription_details"]["subscription"])


def _set_status(emu: Emulator, invoice: JSON, status: str, allowed_from: tuple[str, ...]) -> None:
    sub = _subscription_of(emu, invoice)
    if sub is None or sub["status"] not in allowed_from or sub["status"] == status:
        return
    before = copy.deepcopy(sub)
    sub["status"] = status
    subscriptions.emit_updated(emu, before, sub)


def fail_payment(emu: Emulator, sub_id: str, final: bool = False, unpaid_after: int = 2) -> JSON:
    """Fail the subscription's open invoice, or close the period with a failed payment."""
    sub = emu.store.get("subscription", sub_id)
    latest = emu.store.find("invoice", sub["latest_invoice"] or "")
    if latest is None or latest["status"] != "open":
        latest = close_period(emu, sub_id, payment="fail")
        if final:
            fail(emu, latest, final=True)
        return latest
    return fail(emu, latest, final=final, unpaid_after=unpaid_after)


def retrieve(emu: Emulator, call: Call) -> JSON:
    """GET /v1/invoices/{id}."""
    return emu.store.get("invoice", call.arg("id"))


def list_invoices(emu: Emulator, call: Call) -> JSON:
    """GET /v1/invoices: filters `customer`, `subscription`, `status`."""
    p = call.params
    customer, sub_id, status = p.str("customer"), p.str("subscription"), p.str("status")
    items = [
        inv
        for inv in newest_first(emu.store.table("invoice").values())
        if (customer is None or inv["customer"] == customer)
        and (sub_id is None or inv["parent"]["subscription_details"]["subscription"] == sub_id)
        and (status is None or inv["status"] == status)
    ]
    return paginate(items, p, "/v1/invoices")


def list_lines(emu: Emulator, call: Call) -> JSON:
    """GET /v1/invoices/{id}/lines."""
    invoice = retrieve(emu, call)
    return paginate(invoice["lines"]["data"], call.params, invoice["lines"]["url"])


def pay_endpoint(emu: Emulator, call: Call) -> JSON:
    """POST /v1/invoices/{id}/pay with the customer's default card: a card that fails charges
    answers 402 (a manual attempt does not count in `attempt_count`, as Stripe says)."""
    invoice = retrieve(emu, call)
    if invoice["status"] == "open" and payment_methods.charge_fails(emu, invoice["customer"]):
        raise StripeError(
            402,
            "Your card was declined.",
            type_="card_error",
            code="card_declined",
            decline_code="generic_decline",
        )
    return pay(emu, invoice)
