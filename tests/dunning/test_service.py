"""The dunning service on in-memory twins: the whole walk, each step once under duplicate and
reordered webhooks, a payment at any step, Stripe away during the job."""

from __future__ import annotations

from dataclasses import replace

from meterline.catalog import catalog_from_document
from meterline.dunning import fallback_plan
from tests.dunning.support import DAY, T0, invoice, make_kit
from tests.entitlements.catalogs import example_catalog

WALK = [
    ("payment.failed", None), ("dunning.notice", "notice"),
    ("payment.failed", None), ("dunning.reminder", "reminder"),
    ("payment.failed", None), ("payment.failed", None),
    ("dunning.final_warning", "final_warning"),
    ("payment.failed", None), ("dunning.downgraded", "downgraded"),
    ("dunning.recovery_offer", "recovery_offer"),
    ("dunning.recovered", "recovered"),
]  # fmt: skip


def _walk(kit, twice: bool = False) -> None:
    """Five failed attempts on the default schedule (days 0, 3, 8, 14, 21), the job run
    every day, a payment on day 30."""
    for day in range(31):
        attempt = {0: 1, 3: 2, 8: 3, 14: 4, 21: 5}.get(day)
        if attempt is not None:
            for _ in range(2 if twice else 1):
                kit.fail(attempt, "unpaid" if attempt == 5 else "past_due")
        kit.clock_to(T0 + day * DAY + DAY / 2)
        kit.dunning.run_due()
        if twice:
            kit.dunning.run_due()
    kit.pay(T0 + 30 * DAY)
    if twice:
        kit.pay(T0 + 30 * DAY)


def test_a_failure_walks_every_step_once_and_a_payment_restores():
    kit = make_kit()
    _walk(kit)
    assert kit.published() == WALK
    seq = kit.repo.get(1, "in_1")
    assert seq is not None and seq.step == "recovered" and seq.restored
    assert seq.downgraded_to == "free" and seq.plan == "basic"
    assert seq.steps["reminder"] == T0 + 3 * DAY + DAY / 2
    assert seq.steps["final_warning"] == T0 + 19 * DAY + DAY / 2  # 2 days before day 21
    assert seq.steps["recovery_offer"] == T0 + 28 * DAY + DAY / 2  # 7 days after the downgrade
    assert kit.dunning.current(1, "c1") is None, "an ended sequence is no longer shown"


def test_every_webhook_delivered_twice_and_the_job_run_twice_change_nothing():
    once, twice = make_kit(), make_kit()
    _walk(once)
    _walk(twice, twice=True)
    assert twice.published() == once.published() == WALK


def test_a_paid_invoice_reported_before_its_failure_starts_nothing():
    kit = make_kit()
    paid = replace(invoice(1), status="paid", next_payment_attempt=None)
    kit.stripe_says(paid, "active")
    kit.dunning.on_event(kit.event("invoice.paid", paid, T0 + DAY))
    late = kit.event("invoice.payment_failed", invoice(1), T0)  # delivered late
    kit.dunning.on_event(late)
    assert kit.published() == [("payment.failed", None)]
    assert kit.repo.get(1, "in_1") is None


def test_the_status_change_to_unpaid_downgrades_when_the_final_failure_is_late():
    kit = make_kit()
    kit.fail(1)
    kit.stripe_says(invoice(5), "unpaid")
    kit.dunning.on_event(kit.event("customer.subscription.updated", invoice(5), T0 + 21 * DAY))
    kit.fail(5, "unpaid")  # the invoice's own event, after
    steps = [s for _t, s in kit.published() if s]
    assert steps == ["notice", "downgraded"]


def test_a_payment_before_the_reminder_ends_it_and_sends_no_reminder():
    kit = make_kit()
    kit.fail(1)
    kit.pay(T0 + 2 * DAY)
    kit.clock_to(T0 + 10 * DAY)
    kit.dunning.run_due()
    assert [s for _t, s in kit.published() if s] == ["notice", "recovered"]
    seq = kit.repo.get(1, "in_1")
    assert seq is not None and not seq.restored, "paid before any downgrade"


def test_the_job_sees_a_payment_whose_webhook_has_not_come():
    kit = make_kit()
    kit.fail(1)
    kit.invoices.now["in_1"] = replace(invoice(1), status="paid", next_payment_attempt=None)
    kit.clock_to(T0 + 3 * DAY)
    kit.dunning.run_due()
    assert [s for _t, s in kit.published() if s] == ["notice", "recovered"]


def test_stripe_away_during_the_job_delays_the_step_to_the_next_run():
    kit = make_kit()
    kit.fail(1)
    kit.clock_to(T0 + 3 * DAY)
    kit.invoices.down = True
    assert kit.dunning.run_due() == 0
    kit.invoices.down = False
    assert kit.dunning.run_due() == 1
    assert [s for _t, s in kit.published() if s] == ["notice", "reminder"]


def test_no_timed_step_before_its_time():
    kit = make_kit()
    kit.fail(1)
    kit.clock_to(T0 + 3 * DAY - DAY / 100)
    assert kit.dunning.run_due() == 0
    seq = kit.repo.get(1, "in_1")
    assert seq is not None and seq.next_step(kit.policy) == ("reminder", T0 + 3 * DAY)


def test_a_late_failure_event_announces_its_own_attempt():
    kit = make_kit()
    kit.fail(1)
    kit.stripe_says(invoice(3), "past_due")  # Stripe is at attempt 3 when attempt 2's event comes
    kit.dunning.on_event(kit.event("invoice.payment_failed", invoice(2), T0 + 3 * DAY, 2))
    kit.fail(3)
    counts = [n.data["attempt_count"] for n in kit.repo.published.values()
              if n.type == "payment.failed"]  # fmt: skip
    assert counts == [1, 2, 3]


def test_a_body_of_the_wrong_shape_is_announced_as_stripe_says_it():
    kit = make_kit()
    kit.stripe_says(invoice(1), "past_due")
    event = kit.event("invoice.payment_failed", invoice(1), T0)
    event.object.update(attempt_count="two", next_payment_attempt=[1])
    kit.dunning.on_event(event)
    failed = next(n for n in kit.repo.published.values() if n.type == "payment.failed")
    assert failed.data["attempt_count"] == 1
    assert failed.data["next_payment_attempt"] == "2027-03-04T12:00:00Z"


def test_no_retry_scheduled_before_the_policy_is_spent_is_not_the_final_failure():
    """Stripe schedules no retry without a payment method; the status change ends it later."""
    kit = make_kit()
    kit.stripe_says(replace(invoice(1), next_payment_attempt=None), "past_due")
    kit.dunning.on_event(kit.event("invoice.payment_failed", invoice(1), T0))
    assert [s for _t, s in kit.published() if s] == ["notice"]
    kit.stripe_says(replace(invoice(1), next_payment_attempt=None), "unpaid")
    kit.dunning.on_event(kit.event("customer.subscription.updated", invoice(1), T0 + 21 * DAY))
    assert [s for _t, s in kit.published() if s] == ["notice", "downgraded"]


def test_the_downgrade_plan_is_the_catalogs_policy_for_the_status():
    doc = example_catalog().to_document()
    doc["plans"].append({"key": "frozen", "features": {}})
    doc["payment_policies"] = {"past_due": {"grace_days": 3, "then": "frozen"},
                               "unpaid": {"plan": "frozen"}}  # fmt: skip
    catalog = catalog_from_document(doc)
    assert fallback_plan(catalog, "unpaid") == "frozen"
    assert fallback_plan(catalog, "past_due") == "frozen"  # Stripe set to leave it past due
    assert fallback_plan(catalog, "canceled") == "free", "no policy: the default plan"
    assert fallback_plan(example_catalog(), "canceled") == "free"
