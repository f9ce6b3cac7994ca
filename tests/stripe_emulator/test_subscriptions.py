"""Subscriptions, billing periods, invoices and payment failures through the real SDK."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from stripe_emulator import EmulatorControlError
from stripe_emulator.periods import boundary, index_at
from tests.fixtures.stripe import StripeEmulatorHandle

from . import support


def _subscribe(client: stripe.StripeClient) -> tuple[Any, Any, Any, Any]:
    meter = support.meter(client)
    cus = support.customer(client)
    base, usage = support.metered_plan(client, meter.id)
    sub = client.v1.subscriptions.create(
        {
            "customer": cus.id,
            "items": [{"price": base.id}, {"price": usage.id}],
            "metadata": {"plan": "power"},
        }
    )
    return cus, base, usage, sub


def test_create_has_item_periods(stripe_client: stripe.StripeClient) -> None:
    _, base, usage, sub = _subscribe(stripe_client)
    assert sub.status == "active" and sub.metadata["plan"] == "power"
    base_item, usage_item = sub["items"].data
    assert base_item.price.id == base.id and base_item.quantity == 1
    assert usage_item.price.id == usage.id and usage_item.to_dict().get("quantity") is None
    assert usage_item.current_period_end > usage_item.current_period_start
    assert stripe_client.v1.subscriptions.retrieve(sub.id).id == sub.id
    items = stripe_client.v1.subscription_items.list({"subscription": sub.id})
    assert len(items.data) == 2
    assert stripe_client.v1.subscription_items.retrieve(base_item.id).id == base_item.id


def test_create_validation(stripe_client: stripe.StripeClient) -> None:
    cus = support.customer(stripe_client)
    one_time = stripe_client.v1.prices.create(
        {"product_data": {"name": "x"}, "currency": "usd", "unit_amount": 1}
    )
    cases = [
        {"customer": "cus_missing", "items": [{"price": one_time.id}]},
        {"customer": cus.id},
        {"customer": cus.id, "items": [{"price": "price_missing"}]},
        {"customer": cus.id, "items": [{"price": one_time.id}]},
        {"customer": cus.id, "items": [{"quantity": 2}]},
    ]
    for params in cases:
        with pytest.raises(stripe.InvalidRequestError):
            stripe_client.v1.subscriptions.create(params)
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscription_items.retrieve("si_missing")


def test_trial(stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle) -> None:
    """The trial is the current period (shared/STRIPE-BILLING.md, g): it runs from the creation
    to `trial_end`; usage during it is not charged; at its end the subscription turns active
    and its first paid period starts at `trial_end`, billed in advance for the licensed price."""
    meter = support.meter(stripe_client)
    cus = support.customer(stripe_client)
    base, usage = support.metered_plan(stripe_client, meter.id)
    sub = stripe_client.v1.subscriptions.create(
        {
            "customer": cus.id,
            "items": [{"price": base.id}, {"price": usage.id}],
            "trial_period_days": 14,
        }
    )
    assert sub.status == "trialing" and sub.trial_end == sub.trial_start + 14 * 86_400
    for item in sub["items"].data:
        assert (item.current_period_start, item.current_period_end) == (
            sub.trial_start,
            sub.trial_end,
        )
    support.send(stripe_client, cus.id, "10")
    invoice = stripe_emulator.control.close_period(sub.id)
    lines = {
        line.pricing.price_details.price: line for line in invoice_lines(stripe_client, invoice)
    }
    assert lines[usage.id].amount == 0
    assert lines[base.id].amount == 900 and lines[base.id].period.start == sub.trial_end
    after = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert after.status == "active"
    assert after["items"].data[0].current_period_start == sub.trial_end
    assert after["items"].data[0].current_period_end == boundary(sub.trial_end, "month", 1, 1)


def invoice_lines(client: stripe.StripeClient, invoice: dict[str, Any]) -> list[Any]:
    return list(client.v1.invoices.retrieve(invoice["id"]).lines.data)


def test_upgrade_changes_item_price(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    _cus, base, _, sub = _subscribe(stripe_client)
    bigger = stripe_client.v1.prices.create(
        {
            "product": base.product,
            "currency": "usd",
            "unit_amount": 4900,
            "recurring": {"interval": "month"},
        }
    )
    weekly = stripe_client.v1.prices.create(
        {
            "product": base.product,
            "currency": "usd",
            "unit_amount": 100,
            "recurring": {"interval": "week"},
        }
    )
    item = sub["items"].data[0]
    updated = stripe_client.v1.subscriptions.update(
        sub.id,
        {
            "items": [{"id": item.id, "price": bigger.id, "quantity": 2}],
            "metadata": {"plan": "bigger"},
            "cancel_at_period_end": False,
        },
    )
    changed = updated["items"].data[0]
    assert changed.price.id == bigger.id and changed.quantity == 2
    assert changed.current_period_start == item.current_period_start
    added = stripe_client.v1.subscriptions.update(sub.id, {"items": [{"price": weekly.id}]})
    assert len(added["items"].data) == 3
    gone = stripe_client.v1.subscriptions.update(
        sub.id, {"items": [{"id": added["items"].data[2].id, "deleted": True}]}
    )
    assert len(gone["items"].data) == 2
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscriptions.update(
            sub.id, {"items": [{"id": "si_nope", "price": bigger.id}]}
        )
    events = stripe_emulator.control.events("customer.subscription.updated")
    assert events[0]["data"]["previous_attributes"]["metadata"] == {"plan": "power"}


def test_cancel(stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle) -> None:
    cus, _, _, sub = _subscribe(stripe_client)
    canceled = stripe_client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled" and canceled.canceled_at
    assert stripe_client.v1.subscriptions.list({"customer": cus.id}).data == []
    assert len(stripe_client.v1.subscriptions.list({"status": "all"}).data) == 1
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscriptions.cancel(sub.id)
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscriptions.update(sub.id, {"metadata": {"a": "b"}})
    assert [e["type"] for e in stripe_emulator.control.events("customer.subscription.deleted")]


def test_pause_and_resume(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    _, _, _, sub = _subscribe(stripe_client)
    paused = stripe_client.v1.subscriptions.pause(sub.id, {"type": "subscription"})
    assert paused.status == "paused"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscriptions.pause(sub.id)
    with pytest.raises(EmulatorControlError):
        stripe_emulator.control.close_period(sub.id)
    stripe_emulator.control.advance_clock(3 * 86_400)
    resumed = stripe_client.v1.subscriptions.resume(sub.id)
    assert resumed.status == "active"
    assert (
        resumed["items"].data[0].current_period_start
        >= sub["items"].data[0].current_period_start + 3 * 86_400 - 5
    )
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.subscriptions.resume(sub.id)
    types = [e["type"] for e in stripe_emulator.control.events()]
    assert "customer.subscription.paused" in types and "customer.subscription.resumed" in types


def test_close_period_bills_usage_and_moves_periods(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    cus, base, usage, sub = _subscribe(stripe_client)
    usage_item = sub["items"].data[1]
    support.send(stripe_client, cus.id, "10")
    support.send(stripe_client, cus.id, "5")
    invoice = stripe_emulator.control.close_period(sub.id)
    assert invoice["status"] == "paid"
    fetched = stripe_client.v1.invoices.retrieve(invoice["id"])
    lines = {line.pricing.price_details.price: line for line in fetched.lines.data}
    assert lines[usage.id].quantity == 15 and lines[usage.id].amount == 8
    assert lines[usage.id].period.start == usage_item.current_period_start
    assert lines[base.id].amount == 900
    assert lines[base.id].period.start == usage_item.current_period_end
    assert fetched.parent.subscription_details.subscription == sub.id
    moved = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert moved["items"].data[1].current_period_start == usage_item.current_period_end
    assert moved.latest_invoice == invoice["id"]
    listed = stripe_client.v1.invoices.list({"subscription": sub.id})
    first = sub.latest_invoice  # the first period, invoiced when the subscription was made
    assert [i.id for i in listed.data] == [invoice["id"], first]
    assert len(stripe_client.v1.invoices.line_items.list(invoice["id"]).data) == 2
    assert stripe_emulator.control.now() >= usage_item.current_period_end
    types = [e["type"] for e in stripe_emulator.control.events()]
    for expected in (
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "customer.subscription.updated",
    ):
        assert expected in types


def test_cancel_at_period_end(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    _, _, _, sub = _subscribe(stripe_client)
    stripe_client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    invoice = stripe_emulator.control.close_period(sub.id)
    assert len(invoice["lines"]["data"]) == 1
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "canceled"


def test_draft_invoice_then_finalize(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    _, _, _, sub = _subscribe(stripe_client)
    draft = stripe_emulator.control.close_period(sub.id, finalize=False)
    assert draft["status"] == "draft"
    paid = stripe_emulator.control.finalize_invoice(draft["id"])
    assert paid["status"] == "paid"
    with pytest.raises(EmulatorControlError):
        stripe_emulator.control.finalize_invoice(draft["id"])


def test_payment_failure_past_due_then_unpaid_then_recovered(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    _, _, _, sub = _subscribe(stripe_client)
    invoice = stripe_emulator.control.fail_payment(sub.id)
    assert invoice["status"] == "open"
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    stripe_emulator.control.fail_payment(sub.id)
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "unpaid"
    failed = stripe_emulator.control.events("invoice.payment_failed")
    assert len(failed) == 2
    paid = stripe_client.v1.invoices.pay(invoice["id"])
    assert paid.status == "paid"
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "active"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.pay(invoice["id"])


def test_final_failure_goes_straight_to_unpaid(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    _, _, _, sub = _subscribe(stripe_client)
    invoice = stripe_emulator.control.close_period(sub.id, payment="fail")
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    stripe_emulator.control.fail_payment(sub.id, final=True)
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "unpaid"
    stripe_emulator.control.pay_invoice(invoice["id"])
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_advance_clock_closes_due_periods(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    _, _, _, _sub = _subscribe(stripe_client)
    answer = stripe_emulator.control.advance_clock(65 * 86_400, close_due_periods=True)
    assert len(answer["invoices"]) == 2
    paid = stripe_client.v1.invoices.list({"status": "paid"}).data
    assert [i.billing_reason for i in paid] == ["subscription_cycle"] * 2 + ["subscription_create"]


def test_control_errors(stripe_emulator: StripeEmulatorHandle) -> None:
    control = stripe_emulator.control
    for call in (
        lambda: control.close_period("sub_missing"),
        lambda: control.close_period("sub_missing", payment="maybe"),
        lambda: control.pay_invoice("in_missing"),
        lambda: control.advance_clock(-1),
        lambda: control.fail_payment("sub_missing"),
    ):
        with pytest.raises(EmulatorControlError):
            call()


def test_month_boundaries_clamp_to_month_end() -> None:
    jan31 = 1_769_817_600  # 2026-01-31T00:00:00Z
    assert boundary(jan31, "month", 1, 1) == 1_772_236_800  # 2026-02-28
    assert boundary(jan31, "month", 1, 2) == 1_774_915_200  # 2026-03-31
    assert boundary(jan31, "year", 1, 1) == 1_801_353_600  # 2027-01-31
    assert boundary(jan31, "week", 2, 1) == jan31 + 14 * 86_400
    assert index_at(jan31, "month", 1, 1_772_236_800) == 1
    assert index_at(jan31, "day", 1, jan31 - 5) == 0
    assert index_at(jan31, "day", 1, jan31 + 86_400 * 3 + 1) == 3
