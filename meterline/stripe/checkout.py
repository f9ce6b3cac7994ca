"""Checkout Sessions through Stripe: create one for a plan or a credit pack, read one back.

The session's `metadata` names what it sells (`meterline_tenant`, `meterline_customer`,
`meterline_kind` = plan | credit_pack, `meterline_item` = the plan or pack key); fulfilment
reads it from the session fetched from Stripe, never from the webhook body alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    """The parts of a Checkout Session that fulfilment reads."""

    id: str
    url: str | None
    status: str
    payment_status: str
    subscription: str | None
    metadata: dict[str, str]

    @property
    def paid(self) -> bool:
        return self.status == "complete" and self.payment_status in ("paid", "no_payment_required")


@dataclass(frozen=True, slots=True)
class CheckoutOrder:
    """What to sell: `prices` as (price id, quantity or None for a metered price)."""

    stripe_customer: str
    mode: str
    prices: tuple[tuple[str, int | None], ...]
    success_url: str
    cancel_url: str
    metadata: dict[str, str]


class StripeCheckout:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    def create(self, order: CheckoutOrder) -> CheckoutSession:
        lines = [{"price": p, **({"quantity": q} if q else {})} for p, q in order.prices]
        params: JSON = {
            "mode": order.mode,
            "customer": order.stripe_customer,
            "line_items": lines,
            "success_url": order.success_url,
            "cancel_url": order.cancel_url,
            "metadata": order.metadata,
        }
        if order.mode == "subscription":
            params["subscription_data"] = {"metadata": order.metadata}
        return _session(self._client.v1.checkout.sessions.create(params))  # type: ignore[arg-type]

    def retrieve(self, session_id: str) -> CheckoutSession:
        return _session(self._client.v1.checkout.sessions.retrieve(session_id))


def _session(obj: Any) -> CheckoutSession:
    doc = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    sub = doc.get("subscription")
    return CheckoutSession(
        id=str(doc["id"]),
        url=doc.get("url"),
        status=str(doc.get("status")),
        payment_status=str(doc.get("payment_status")),
        subscription=str(sub["id"] if isinstance(sub, dict) else sub) if sub else None,
        metadata={str(k): str(v) for k, v in (doc.get("metadata") or {}).items()},
    )
