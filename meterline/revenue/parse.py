"""A Stripe subscription object (a webhook's `data.object`, or one listed) as a `SubscriptionState`.

What is read: `id`, `status`, `currency`, each item's price (`unit_amount`, else a whole
`unit_amount_decimal`; `recurring.interval`, `interval_count`, `usage_type`) and `quantity`,
and a discount's coupon (`discount.coupon`, or the expanded objects of `discounts`; the first
`forever` one wins, else the first). Metered items are left out (not recurring revenue), and
so is a licensed price without a per-unit amount (tiered). A field of the wrong type raises
`BadSubscription` (an `InvalidWebhook`, 400) naming it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from meterline.revenue.model import Discount, Item, SubscriptionState
from meterline.stripe.webhook_events import InvalidWebhook

INTERVALS = frozenset({"day", "week", "month", "year"})
JSON = dict[str, Any]


class BadSubscription(InvalidWebhook):
    """A subscription snapshot that cannot be read: the webhook answers 400 and the body is
    kept with the reason, like any unusable verified event."""


def subscription_state(obj: JSON, customer: str, at: int) -> SubscriptionState:
    """The state `obj` shows, for the tenant's `customer`, at Unix second `at`."""
    items = obj.get("items") or {}
    data = items.get("data") if isinstance(items, dict) else None
    if not isinstance(data, list):
        raise BadSubscription("items.data: must be a list")
    return SubscriptionState(
        at=datetime.fromtimestamp(at, UTC),
        customer=customer,
        subscription=_text(obj, "id"),
        status=_text(obj, "status"),
        currency=_currency(obj, data),
        items=tuple(i for i in (_item(x, n) for n, x in enumerate(data)) if i is not None),
        discount=_discount(obj),
    )


def customer_of(obj: JSON) -> str | None:
    """The Stripe customer id a subscription object names (None when it names none)."""
    found = obj.get("customer")
    if isinstance(found, dict):
        found = found.get("id")
    return found if isinstance(found, str) and found else None


def _text(doc: JSON, field: str) -> str:
    value = doc.get(field)
    if not isinstance(value, str) or not value:
        raise BadSubscription(f"{field}: must be a non-empty string")
    return value


def _currency(obj: JSON, data: list[Any]) -> str:
    found = obj.get("currency")
    if not found and data and isinstance(data[0], dict):
        found = (data[0].get("price") or {}).get("currency")
    if not isinstance(found, str) or not found:
        raise BadSubscription("currency: must be a non-empty string")
    return found.lower()


def _item(item: Any, n: int) -> Item | None:
    where = f"items.data[{n}]"
    price = item.get("price") if isinstance(item, dict) else None
    if not isinstance(price, dict):
        raise BadSubscription(f"{where}.price: must be an object")
    recurring = price.get("recurring") or {}
    if recurring.get("usage_type") == "metered":
        return None
    interval = recurring.get("interval")
    if interval not in INTERVALS:
        raise BadSubscription(
            f"{where}.price.recurring.interval: must be one of {sorted(INTERVALS)}"
        )
    amount = _unit_amount(price, where)
    if amount is None:
        return None
    quantity = item.get("quantity", 1)
    count = recurring.get("interval_count") or 1
    if not _whole(quantity) or not _whole(count) or count < 1:
        raise BadSubscription(f"{where}.quantity: must be a whole number")
    return Item(amount, quantity, interval, count)


def _unit_amount(price: JSON, where: str) -> int | None:
    amount = price.get("unit_amount")
    if isinstance(amount, int) and _whole(amount):
        return amount
    decimal = price.get("unit_amount_decimal")
    if decimal is None:
        return None
    try:
        return int(Decimal(str(decimal)).quantize(Decimal(1), ROUND_HALF_UP))
    except InvalidOperation:
        raise BadSubscription(f"{where}.price.unit_amount_decimal: must be a number") from None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _discount(obj: JSON) -> Discount | None:
    found = [obj.get("discount"), *(obj.get("discounts") or [])]
    coupons = [
        d["coupon"] for d in found if isinstance(d, dict) and isinstance(d.get("coupon"), dict)
    ]
    if not coupons:
        return None
    coupon = next((c for c in coupons if c.get("duration") == "forever"), coupons[0])
    percent = coupon.get("percent_off")
    amount = coupon.get("amount_off")
    return Discount(
        duration=str(coupon.get("duration") or "once"),
        percent_off=None if percent is None else Decimal(str(percent)),
        amount_off=int(amount) if _whole(amount) else None,
    )
