"""The webhook listener and the rebuild's reading of Stripe, on the memory twins."""

from __future__ import annotations

from typing import Any

import pytest

from meterline.entitlements.repository import MemoryCustomerRepository
from meterline.revenue import BadSubscription, Item, MemoryRevenueEventStore, RevenueListener
from meterline.revenue.rebuild import rebuilt_states
from meterline.stripe.webhook_events import StripeEvent

DAY = 86_400
T0 = 1_767_225_600  # 2026-01-01


def sub(id_: str = "sub_1", status: str = "active", customer: str = "cus_1", **more: Any) -> Any:
    price = {"unit_amount": 900, "currency": "usd", "recurring": {"interval": "month"}}
    items = {"data": [{"price": price, "quantity": 1}]}
    return {"id": id_, "customer": customer, "status": status, "currency": "usd", "items": items,
            **more}  # fmt: skip


def event(id_: str, obj: Any, type_: str = "customer.subscription.updated", at: int = T0) -> Any:
    return StripeEvent(id_, type_, at, obj, obj.get("id"))


@pytest.fixture
def listener() -> tuple[RevenueListener, MemoryRevenueEventStore]:
    customers = MemoryCustomerRepository()
    customers.create(7, "acme-1", None, None)
    customers.set_stripe_id(7, "acme-1", "cus_1")
    store = MemoryRevenueEventStore()
    return RevenueListener(customers, store), store


def test_a_subscription_event_is_kept_once_for_the_tenants_customer(
    listener: tuple[RevenueListener, MemoryRevenueEventStore],
) -> None:
    hear, store = listener
    assert hear.on_event(event("evt_1", sub()))
    assert not hear.on_event(event("evt_1", sub(status="canceled")))  # redelivered
    (state,) = store.states(7)
    assert (state.customer, state.status, state.items) == (
        "acme-1",
        "active",
        (Item(900, 1, "month"),),
    )


def test_other_events_and_unknown_customers_are_ignored(
    listener: tuple[RevenueListener, MemoryRevenueEventStore],
) -> None:
    hear, store = listener
    assert not hear.on_event(event("evt_2", {"id": "in_1", "customer": "cus_1"}, "invoice.paid"))
    assert not hear.on_event(event("evt_3", sub(customer="cus_someone_else")))
    assert store.states(7) == []


def test_an_unreadable_snapshot_is_refused_naming_the_field(
    listener: tuple[RevenueListener, MemoryRevenueEventStore],
) -> None:
    hear, store = listener
    with pytest.raises(BadSubscription, match=r"^items.data\[0\].quantity"):
        hear.on_event(
            event(
                "evt_4",
                sub()
                | {
                    "items": {
                        "data": [{"price": sub()["items"]["data"][0]["price"], "quantity": "2"}]
                    }
                },
            )
        )
    assert store.states(7) == []


def test_rebuild_keeps_listed_events_and_rebuilds_older_subscriptions() -> None:
    known = {"cus_1": "acme-1"}
    listed = [
        event("evt_c", sub("sub_new"), "customer.subscription.created", T0 + 40 * DAY),
        event("evt_u", sub("sub_old", "past_due"), at=T0 + 50 * DAY),
        event("evt_x", sub("sub_x", customer="cus_other"), "customer.subscription.created"),
    ]
    never = sub("sub_never", "incomplete_expired", start_date=T0, ended_at=T0 + DAY)
    old = sub("sub_old", "canceled", start_date=T0, trial_end=T0 + 14 * DAY, ended_at=T0 + 60 * DAY)
    found = rebuilt_states(listed, [sub("sub_new", start_date=T0 + 40 * DAY), old, never], known)
    got = sorted((s.at.date().isoformat(), s.subscription, s.status, e) for e, s in found)
    assert got == [
        ("2026-01-01", "sub_never", "incomplete_expired", "rebuild:sub_never:start"),
        ("2026-01-01", "sub_old", "trialing", "rebuild:sub_old:start"),
        ("2026-01-15", "sub_old", "active", "rebuild:sub_old:trial_end"),
        ("2026-02-10", "sub_new", "active", "evt_c"),  # its creation is listed: events only
        ("2026-02-20", "sub_old", "past_due", "evt_u"),
        ("2026-03-02", "sub_old", "canceled", "rebuild:sub_old:ended"),
    ]
