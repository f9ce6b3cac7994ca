"""Stripe subscription objects read as revenue states: what counts, and bad fields named."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from meterline.revenue import BadSubscription, Discount, Item, customer_of, subscription_state


def price(amount: Any = 900, interval: str = "month", usage: str = "licensed") -> dict[str, Any]:
    recurring = {"interval": interval, "interval_count": 1, "usage_type": usage}
    return {"id": "price_1", "unit_amount": amount, "currency": "usd", "recurring": recurring}


def sub(*items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "sub_1",
        "customer": "cus_1",
        "status": "active",
        "currency": "usd",
        "items": {"data": list(items)},
        **extra,
    }


def test_licensed_items_are_read_and_metered_ones_left_out() -> None:
    obj = sub(
        {"price": price(900), "quantity": 3},
        {"price": price(None, usage="metered")},
        {"price": price(49000, "year"), "quantity": 1},
    )
    found = subscription_state(obj, "acme-1", 1_767_225_600)
    assert found.items == (Item(900, 3, "month"), Item(49000, 1, "year"))
    assert (found.customer, found.subscription, found.status) == ("acme-1", "sub_1", "active")
    assert found.at.isoformat() == "2026-01-01T00:00:00+00:00"


def test_a_forever_coupon_is_preferred() -> None:
    once = {"coupon": {"duration": "once", "percent_off": 50}}
    forever = {"coupon": {"duration": "forever", "amount_off": 200}}
    found = subscription_state(sub({"price": price()}, discounts=[once, forever]), "c", 0)
    assert found.discount == Discount("forever", None, 200)
    legacy = subscription_state(sub({"price": price()}, discount=once), "c", 0)
    assert legacy.discount == Discount("once", Decimal(50), None)


def test_a_decimal_unit_amount_is_rounded_to_a_minor_unit() -> None:
    p = price(None) | {"unit_amount_decimal": "1234.5"}
    assert subscription_state(sub({"price": p}), "c", 0).items == (Item(1235, 1, "month"),)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (sub({"price": price(interval="fortnight")}), "items.data[0].price.recurring.interval"),
        (sub({"price": price(), "quantity": -1}), "items.data[0].quantity"),
        (sub({"price": "price_1"}), "items.data[0].price"),
        (sub() | {"status": None}, "status"),
        (sub() | {"items": None}, "items.data"),
    ],
)
def test_a_bad_field_is_named(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(BadSubscription) as caught:
        subscription_state(obj, "c", 0)
    assert caught.value.status == 400 and caught.value.message.startswith(field + ":")


def test_the_customer_id_may_be_expanded() -> None:
    assert customer_of(sub()) == "cus_1"
    assert customer_of(sub() | {"customer": {"id": "cus_2"}}) == "cus_2"
    assert customer_of(sub() | {"customer": None}) is None
