"""Invoices as dunning reads them: `StripeInvoices.facts(id)` re-fetches one from Stripe.

The payment link is the invoice's `hosted_invoice_url` (set when Stripe finalizes it): a page
that pays this very invoice, valid while it is open, so the link in a notice sent days later
still works and paying there ends the sequence at once. (A Billing Portal session with the
`payment_method_update` flow is "short-lived and will expire if the customer does not visit the
URL"; it changes the card but leaves the invoice to the next automatic retry.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import stripe

from meterline.dunning.model import InvoiceFacts
from meterline.errors import Unavailable

JSON = dict[str, Any]


class StripeInvoices:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    def facts(self, invoice_id: str) -> InvoiceFacts | None:
        """What Stripe says of the invoice now; None when Stripe has no such invoice.
        Raises Unavailable (503, retry) when Stripe cannot be read."""
        try:
            found = self._client.v1.invoices.retrieve(invoice_id)
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise Unavailable(f"Stripe: invoice {invoice_id} not read: {exc}", 5) from exc
        except stripe.StripeError as exc:
            raise Unavailable(f"Stripe: invoice {invoice_id} not read: {exc}", 5) from exc
        return invoice_facts(found.to_dict())


def invoice_facts(doc: JSON) -> InvoiceFacts:
    """The facts of an invoice object (from the API, or a verified webhook body)."""
    parent = doc.get("parent") or {}
    details = parent.get("subscription_details") or {}
    sub = details.get("subscription") or doc.get("subscription")
    attempt = doc.get("next_payment_attempt")
    return InvoiceFacts(
        id=str(doc["id"]),
        stripe_customer=_id(doc.get("customer")),
        subscription_id=None if sub is None else _id(sub),
        status=str(doc.get("status") or "draft"),
        attempt_count=int(doc.get("attempt_count") or 0),
        next_payment_attempt=None if attempt is None else datetime.fromtimestamp(attempt, UTC),
        update_url=doc.get("hosted_invoice_url"),
        amount_due=int(doc.get("amount_due") or 0),
        currency=str(doc.get("currency") or ""),
    )


def _id(value: Any) -> str:
    return str(value["id"] if isinstance(value, dict) else value)
