"""A subscriber's own billing through Stripe: cancel at period end and resume, the Billing
Portal link, and payment methods (SetupIntent, list, set default, detach).

Cancel and resume set `cancel_at_period_end` (shared/STRIPE-BILLING.md, e): the subscription
goes on to the period end and is then deleted; setting it back before then undoes it. A
pending schedule is released first (a scheduled downgrade and a cancel do not mix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Card:
    id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    default: bool


@dataclass(frozen=True, slots=True)
class SetupIntent:
    id: str
    client_secret: str | None
    status: str


class StripeSelfService:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    def set_cancel_at_period_end(self, sub_id: str, cancel: bool) -> None:
        sub = self._client.v1.subscriptions.retrieve(sub_id)
        if cancel and getattr(sub, "schedule", None):
            self._client.v1.subscription_schedules.release(str(sub.schedule))
        self._client.v1.subscriptions.update(sub_id, {"cancel_at_period_end": cancel})

    def portal_url(self, customer: str, return_url: str) -> str:
        params = {"customer": customer, "return_url": return_url}
        return str(self._client.v1.billing_portal.sessions.create(params).url)  # type: ignore[arg-type]

    def setup_intent(self, customer: str) -> SetupIntent:
        params = {"customer": customer, "usage": "off_session"}
        intent = self._client.v1.setup_intents.create(params)  # type: ignore[arg-type]
        return SetupIntent(str(intent.id), intent.client_secret, str(intent.status))

    def cards(self, customer: str) -> list[Card]:
        default = self.default_method(customer)
        listed = self._client.v1.customers.payment_methods.list(customer, {"limit": 100})
        return [_card(m.to_dict(), default) for m in listed.auto_paging_iter()]

    def default_method(self, customer: str) -> str | None:
        found = self._client.v1.customers.retrieve(customer).to_dict()
        value = (found.get("invoice_settings") or {}).get("default_payment_method")
        return None if not value else str(value["id"] if isinstance(value, dict) else value)

    def owner(self, method: str) -> str | None:
        """The Stripe customer `method` is attached to (None: unattached or unknown)."""
        try:
            found = self._client.v1.payment_methods.retrieve(method).to_dict()
        except stripe.InvalidRequestError as exc:
            if exc.code == "resource_missing":
                return None
            raise
        owner = found.get("customer")
        return None if not owner else str(owner["id"] if isinstance(owner, dict) else owner)

    def set_default(self, customer: str, method: str) -> None:
        params = {"invoice_settings": {"default_payment_method": method}}
        self._client.v1.customers.update(customer, params)  # type: ignore[arg-type]

    def detach(self, method: str) -> None:
        self._client.v1.payment_methods.detach(method)


def _card(doc: JSON, default: str | None) -> Card:
    card = doc.get("card") or {}
    return Card(
        id=str(doc["id"]),
        brand=card.get("brand"),
        last4=card.get("last4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
        default=doc["id"] == default,
    )
