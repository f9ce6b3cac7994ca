"""Subscription Schedules through the real SDK (shared/STRIPE-BILLING.md, e, "Downgrade at
period end"): a downgrade scheduled from the subscription takes effect at the period end and
not before, bills the next period at the new price, then releases the subscription."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from tests.fixtures.stripe import StripeEmulatorHandle
from tests.stripe_emulator.test_prorations import _subscribed


def _downgrade(client: stripe.StripeClient, sub: Any, price: str) -> Any:
    schedule = client.v1.subscription_schedules.create({"from_subscription": sub.id})
    phase = schedule.phases[0]
    return client.v1.subscription_schedules.update(
        schedule.id,
        {
            "end_behavior": "release",
            "phases": [
                {
                    "items": [{"price": phase["items"][0]["price"], "quantity": 1}],
                    "start_date": phase.start_date,
                    "end_date": phase.end_date,
                },
                {"items": [{"price": price, "quantity": 1}]},
            ],
        },
    )


def test_a_downgrade_takes_effect_at_the_period_end_and_not_before(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    sub, basic, pro = _subscribed(stripe_client)
    item = sub["items"].data[0]
    stripe_client.v1.subscriptions.update(
        sub.id, {"items": [{"id": item.id, "price": pro.id}], "proration_behavior": "none"}
    )
    schedule = _downgrade(stripe_client, sub, basic.id)
    end = item.current_period_end
    assert schedule.status == "active" and schedule.subscription == sub.id
    assert (schedule.current_phase.start_date, schedule.current_phase.end_date) == (
        item.current_period_start,
        end,
    )
    assert stripe_client.v1.subscriptions.retrieve(sub.id).schedule == schedule.id
    control = stripe_emulator.control
    control.advance_clock(end - control.now() - 1, close_due_periods=True)
    before = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert before["items"].data[0].price.id == pro.id
    control.advance_clock(2, close_due_periods=True)
    after = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert after["items"].data[0].price.id == basic.id
    assert after["items"].data[0].current_period_start == end
    invoice = stripe_client.v1.invoices.retrieve(after.latest_invoice)
    assert invoice.amount_due == 1000, "the next period is billed at the downgraded price"
    moved = stripe_client.v1.subscription_schedules.retrieve(schedule.id)
    assert moved.status == "active" and moved.current_phase.start_date == end
    control.advance_clock(after["items"].data[0].current_period_end - control.now(), True)
    released = stripe_client.v1.subscription_schedules.retrieve(schedule.id)
    assert (released.status, released.released_subscription) == ("released", sub.id)
    final = stripe_client.v1.subscriptions.retrieve(sub.id)
    assert final.schedule is None and final.status == "active"
    assert final["items"].data[0].price.id == basic.id
    types = [e["type"] for e in control.events() if e["type"].startswith("subscription_schedule")]
    assert types == [
        "subscription_schedule.created",
        "subscription_schedule.updated",
        "subscription_schedule.updated",
        "subscription_schedule.released",
    ]


def test_release_keeps_the_subscription_and_cancel_ends_it(
    stripe_client: stripe.StripeClient,
) -> None:
    sub, basic, _ = _subscribed(stripe_client)
    schedule = _downgrade(stripe_client, sub, basic.id)
    released = stripe_client.v1.subscription_schedules.release(schedule.id)
    assert released.status == "released"
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "active"
    again = _downgrade(stripe_client, sub, basic.id)
    canceled = stripe_client.v1.subscription_schedules.cancel(again.id)
    assert canceled.status == "canceled"
    assert stripe_client.v1.subscriptions.retrieve(sub.id).status == "canceled"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"customer": "cus_x"}, "from_subscription"),
        ({"from_subscription": "sub_x", "end_behavior": "cancel"}, "from_subscription"),
    ],
)
def test_bad_creates_name_the_parameter(
    stripe_client: stripe.StripeClient, params: dict[str, Any], param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscription_schedules.create(params)  # type: ignore[arg-type]
    assert caught.value.param == param


def test_the_current_phase_cannot_move_and_a_subscription_has_one_schedule(
    stripe_client: stripe.StripeClient,
) -> None:
    sub, basic, _ = _subscribed(stripe_client)
    schedule = stripe_client.v1.subscription_schedules.create({"from_subscription": sub.id})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.subscription_schedules.update(
            schedule.id,
            {"phases": [{"items": [{"price": basic.id}], "start_date": schedule.created - 99}]},
        )
    assert caught.value.param == "phases[0][start_date]"
    with pytest.raises(stripe.InvalidRequestError) as twice:
        stripe_client.v1.subscription_schedules.create({"from_subscription": sub.id})
    assert "already attached" in str(twice.value.user_message)
