"""A closed Stripe invoice (a webhook's `data.object`, or one listed) as a `MeteredInvoice`.

Metered usage billed on invoices is revenue, but not recurring revenue (Stripe, ChartMogul:
MRR excludes metered charges), so it is kept apart from the subscription states and shown
beside MRR, never inside it or its movements (reporter/README.md, "Revenue").

What is read: `id`, `status` (only closed invoices: `open`, `paid`, `uncollectible`, `void`;
a draft is still changing and is ignored), `currency`, `status_transitions.finalized_at`
(else `created`: when the invoice closed), and each line's `amount` less its
`discount_amounts`, for the lines whose price is metered. Which price is metered is asked of
`InvoiceLines.is_metered` (a line of the older API carries its `price` object, a newer one only
the price id in `pricing.price_details.price`, whose usage type is fetched from Stripe once per
price: prices never change it). Taxes are not in a line's `amount`, so they are never counted.
A field of the wrong type raises `BadInvoice` (an `InvalidWebhook`, 400) naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from meterline.revenue.model import MeteredInvoice
from meterline.stripe.webhook_events import InvalidWebhook

JSON = dict[str, Any]
CLOSED = frozenset({"open", "paid", "uncollectible", "void"})
RANK = {"open": 0, "uncollectible": 1, "paid": 2, "void": 2}
"""A status never goes back: an invoice seen `paid` and then, delivered late, `open` stays paid."""


class BadInvoice(InvalidWebhook):
    """An invoice that cannot be read: the webhook answers 400 and keeps the body."""


class InvoiceLines(Protocol):
    def lines(self, invoice: JSON) -> list[JSON]:
        """Every line of `invoice` (the object's first page, or all of them from Stripe)."""

    def is_metered(self, line: JSON) -> bool:
        """Whether the line bills a metered price."""


def metered_invoice(obj: JSON, customer: str, lines: InvoiceLines) -> MeteredInvoice | None:
    """The metered part of a closed invoice (None for a draft)."""
    status = _text(obj, "status")
    if status not in CLOSED:
        return None
    return MeteredInvoice(
        at=datetime.fromtimestamp(_closed_at(obj), UTC),
        customer=customer,
        invoice=_text(obj, "id"),
        currency=_text(obj, "currency").lower(),
        amount=metered_amount(lines.lines(obj), lines),
        status=status,
    )


def metered_amount(found: Sequence[JSON], lines: InvoiceLines) -> int:
    """The sum of the metered lines' amounts less their discounts, in minor units."""
    total = 0
    for n, line in enumerate(found):
        if lines.is_metered(line):
            total += _int(line, "amount", f"lines.data[{n}].amount") - _discounts(line, n)
    return total


def later(kept: MeteredInvoice, new: MeteredInvoice) -> MeteredInvoice:
    """Of two sightings of one invoice, the one further along (see `RANK`)."""
    return new if RANK[new.status] >= RANK[kept.status] else kept


def _closed_at(obj: JSON) -> int:
    transitions = obj.get("status_transitions") or {}
    finalized = transitions.get("finalized_at") if isinstance(transitions, dict) else None
    if isinstance(finalized, int) and not isinstance(finalized, bool):
        return finalized
    return _int(obj, "created", "created")


def _discounts(line: JSON, n: int) -> int:
    found = line.get("discount_amounts") or []
    if not isinstance(found, list):
        raise BadInvoice(f"lines.data[{n}].discount_amounts: must be a list")
    return sum(_int(d, "amount", f"lines.data[{n}].discount_amounts.amount") for d in found)


def _int(doc: Any, field: str, path: str) -> int:
    value = doc.get(field) if isinstance(doc, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInvoice(f"{path}: must be an integer")
    return value


def _text(doc: JSON, field: str) -> str:
    value = doc.get(field)
    if not isinstance(value, str) or not value:
        raise BadInvoice(f"{field}: must be a non-empty string")
    return value
