"""Plan changes through Stripe: previews, upgrades now with prorations, downgrades at the period
end with a Subscription Schedule (shared/STRIPE-BILLING.md, e).

An upgrade is `subscriptions.update(items, proration_behavior=always_invoice, proration_date)`
with the `proration_date` its preview used, so the invoice charges exactly what the preview
showed. A downgrade is the documented schedule pattern: `subscription_schedules.create(
from_subscription)`, then two phases (the current items to the period end, then the new ones)
and `end_behavior=release`. `ItemChange` lists say what happens to each subscription item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ItemChange:
    """One subscription item: `item_id` None adds `price`; `deleted` removes the item."""

    item_id: str | None
    price: str | None
    quantity: int | None = None
    deleted: bool = False

    def params(self) -> JSON:
        out: JSON = {}
        if self.item_id is not None:
            out["id"] = self.item_id
        if self.deleted:
            return {**out, "deleted": True}
        out["price"] = self.price
        if self.quantity is not None:
            out["quantity"] = self.quantity
        return out


@dataclass(frozen=True, slots=True)
class PreviewLine:
    description: str
    amount: int
    proration: bool
    period_start: int
    period_end: int
    price: str | None = None


@dataclass(frozen=True, slots=True)
class InvoicePreview:
    amount_due: int
    currency: str
    lines: tuple[PreviewLine, ...]
    next_payment_attempt: int | None


@dataclass(frozen=True, slots=True)
class InvoiceSummary:
    id: str
    status: str
    amount_due: int
    amount_paid: int
    currency: str
    hosted_invoice_url: str | None
    created: int


class StripePlanChanges:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    def subscription(self, sub_id: str) -> JSON:
        return dict(self._client.v1.subscriptions.retrieve(sub_id).to_dict())

    def preview(
        self, sub_id: str, changes: list[ItemChange], behavior: str, proration_date: int
    ) -> InvoicePreview:
        details: JSON = {
            "items": [c.params() for c in changes],
            "proration_behavior": behavior,
            "proration_date": proration_date,
        }
        params = {"subscription": sub_id, "subscription_details": details}
        invoice = self._client.v1.invoices.create_preview(params)  # type: ignore[arg-type]
        return _preview(invoice.to_dict())

    def upgrade(self, sub_id: str, changes: list[ItemChange], proration_date: int) -> str | None:
        """Change the items now and invoice the prorations at once; the invoice id."""
        return self.update_items(sub_id, changes, "always_invoice", proration_date)

    def update_items(
        self, sub_id: str, changes: list[ItemChange], behavior: str, proration_date: int
    ) -> str | None:
        """Change the items now with `proration_behavior`; the latest invoice id."""
        params = {
            "items": [c.params() for c in changes],
            "proration_behavior": behavior,
            "proration_date": proration_date,
        }
        sub = self._client.v1.subscriptions.update(sub_id, params)  # type: ignore[arg-type]
        latest = sub.latest_invoice
        return None if latest is None else str(getattr(latest, "id", latest))

    def invoice(self, invoice_id: str) -> InvoiceSummary:
        return invoice_summary(self._client.v1.invoices.retrieve(invoice_id).to_dict())

    def schedule_change(self, sub: JSON, items: list[JSON]) -> str:
        """Keep the current items to the period end, then `items` (`{price, quantity}`);
        reuses the subscription's schedule when it has one. Returns the schedule id."""
        schedules = self._client.v1.subscription_schedules
        schedule_id = sub.get("schedule")
        if not schedule_id:
            created = schedules.create({"from_subscription": sub["id"]})
            schedule_id = created.id
        current = schedules.retrieve(str(schedule_id)).to_dict()
        first = current["phases"][0]
        kept = [_phase_item(i) for i in first["items"]]
        phases = [
            {"items": kept, "start_date": first["start_date"], "end_date": first["end_date"]},
            {"items": [_phase_item(i) for i in items]},
        ]
        params = {"end_behavior": "release", "phases": phases}
        schedules.update(str(schedule_id), params)  # type: ignore[arg-type]
        return str(schedule_id)

    def scheduled(self, sub: JSON) -> tuple[int, list[str]] | None:
        """(when, the prices of the next phase) of the subscription's schedule, or None."""
        schedule_id = sub.get("schedule")
        if not schedule_id:
            return None
        found = self._client.v1.subscription_schedules.retrieve(str(schedule_id)).to_dict()
        current = found.get("current_phase") or {}
        later = [p for p in found["phases"] if p["start_date"] >= current.get("end_date", 0)]
        if found["status"] != "active" or not later:
            return None
        return int(later[0]["start_date"]), [str(i["price"]) for i in later[0]["items"]]

    def upcoming(self, sub_id: str) -> InvoicePreview:
        """The subscription's next invoice as it stands (metered usage so far included)."""
        params = {"subscription": sub_id}
        return _preview(self._client.v1.invoices.create_preview(params).to_dict())  # type: ignore[arg-type]

    def recent_invoices(self, customer: str, limit: int = 10) -> list[InvoiceSummary]:
        listed = self._client.v1.invoices.list({"customer": customer, "limit": limit})
        return [invoice_summary(i.to_dict()) for i in listed.data]

    def release(self, sub: JSON) -> None:
        if sub.get("schedule"):
            self._client.v1.subscription_schedules.release(str(sub["schedule"]))


def _phase_item(item: JSON) -> JSON:
    price = item["price"]
    out: JSON = {"price": str(price["id"] if isinstance(price, dict) else price)}
    if item.get("quantity") is not None:
        out["quantity"] = int(item["quantity"])
    return out


def _preview(doc: JSON) -> InvoicePreview:
    lines = tuple(_line(line) for line in doc["lines"]["data"])
    return InvoicePreview(
        int(doc["amount_due"]), str(doc["currency"]), lines, doc.get("next_payment_attempt")
    )


def _line(line: JSON) -> PreviewLine:
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details") or {}
    return PreviewLine(
        description=str(line.get("description") or ""),
        amount=int(line["amount"]),
        proration=bool(details.get("proration")),
        period_start=int(line["period"]["start"]),
        period_end=int(line["period"]["end"]),
        price=((line.get("pricing") or {}).get("price_details") or {}).get("price"),
    )


def invoice_summary(doc: JSON) -> InvoiceSummary:
    return InvoiceSummary(
        id=str(doc["id"]),
        status=str(doc["status"]),
        amount_due=int(doc["amount_due"]),
        amount_paid=int(doc.get("amount_paid") or 0),
        currency=str(doc["currency"]),
        hosted_invoice_url=doc.get("hosted_invoice_url"),
        created=int(doc["created"]),
    )
