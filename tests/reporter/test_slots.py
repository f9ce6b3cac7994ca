"""Pure parts: slots, identifiers, discrepancy classification, revision planning."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from meterline.catalog.model import Aggregation
from reporter.contexts import EPOCH, Context, ContextHistory
from reporter.ledger import Reported
from reporter.push import plan_revisions
from reporter.reconcile import HourFigures, classify
from reporter.scope import BilledMeter
from reporter.slots import SlotUsage, ceil_minute, floor_hour, identifier, slot_end, slot_start

T0 = datetime(2026, 11, 21, 10, tzinfo=UTC)
minutes = st.integers(min_value=0, max_value=60 * 24 * 3)
seconds = st.integers(min_value=0, max_value=86_400 * 3)


@given(st.lists(seconds, max_size=4), minutes)
def test_a_bucket_lies_inside_its_slot(boundary_s, bucket_min):
    boundaries = [ceil_minute(T0 + timedelta(seconds=s)) for s in boundary_s]
    bucket = T0 + timedelta(minutes=bucket_min)
    start = slot_start(bucket, boundaries)
    assert floor_hour(bucket) <= start <= bucket < slot_end(start, boundaries)
    assert not any(start < b <= bucket for b in boundaries)


@given(seconds, minutes)
def test_a_boundary_splits_periods_at_the_minute_it_is_rounded_up_to(boundary_s, bucket_min):
    boundary = T0 + timedelta(seconds=boundary_s)
    bucket = T0 + timedelta(minutes=bucket_min)
    start = slot_start(bucket, [ceil_minute(boundary)])
    assert (start >= boundary) == (bucket >= ceil_minute(boundary))


@given(st.text(min_size=1, max_size=128), st.text(min_size=1, max_size=64), st.integers(1, 10**6))
def test_identifiers_are_deterministic_and_fit_stripe(customer, meter, revision):
    one = identifier(7, customer, meter, T0, revision)
    assert one == identifier(7, customer, meter, T0, revision) and len(one) <= 100
    assert one != identifier(7, customer, meter, T0, revision + 1)
    assert one != identifier(7, customer, meter, T0 + timedelta(hours=1), revision)


def _f(ours, sent, stripe, values=None, unsent=0):
    return HourFigures(Decimal(ours), Decimal(sent), Decimal(unsent), Decimal(stripe),
                       [Decimal(v) for v in (values or [sent])])  # fmt: skip


def test_classify_names_each_fault():
    assert classify(_f(10, 10, 10)) == []
    assert classify(_f(10, 10, 0)) == [("missing_in_stripe", Decimal(-10), Decimal(0))]
    assert classify(_f(10, 10, 20)) == [("extra_in_stripe", Decimal(10), Decimal(20))]
    assert classify(_f(10, 10, 17)) == [("value_mismatch", Decimal(7), Decimal(17))]
    assert classify(_f(0, 0, 5, [])) == [("extra_in_stripe", Decimal(5), Decimal(5))]
    assert classify(_f(15, 15, 10, [10, 5])) == [("missing_in_stripe", Decimal(-5), Decimal(10))]
    assert classify(_f(12, 10, 10)) == [("not_reported", Decimal(-2), Decimal(10))]
    assert classify(_f(12, 10, 10, unsent=2)) == []


def test_stray_rows_are_compared_with_stripe_and_not_with_ours():
    """A slot no context bills, pushed before the change was learned and too old to cancel:
    Stripe holds it, ours and the ledger's account leave it out."""
    f = HourFigures(Decimal(11), Decimal(11), stripe=Decimal(17), sent_values=[Decimal(11)])
    f.sent_values.append(Decimal(6))
    f.stray = Decimal(6)
    assert classify(f) == []
    f.stripe = Decimal(11)
    assert classify(f) == [("missing_in_stripe", Decimal(-6), Decimal(11))]
    last = HourFigures(Decimal(4), Decimal(4), stripe=Decimal(9), stray=Decimal(9))
    assert classify(last, "last") == []
    assert classify(replace(last, stray=None), "last") == [
        ("value_mismatch", Decimal(5), Decimal(9))
    ]


@given(
    st.decimals(0, 10**6, places=2),
    st.decimals(0, 10**6, places=2),
    st.decimals(0, 10**6, places=2),
)
def test_classify_is_silent_exactly_when_all_three_agree(ours, sent, stripe):
    found = classify(_f(ours, sent, stripe))
    assert (found == []) == (ours == sent == stripe)
    for kind, difference, _ in found:
        assert difference != 0
        assert kind != "not_reported" or difference == sent - ours


def _scope(aggregation=Aggregation.SUM):
    meter = BilledMeter("api_calls", aggregation, "ev", "mtr_1", Decimal("0.5"), "usd")
    context = Context("c", EPOCH, "power", "cus_1", "sub_1", {"api_calls": meter})
    return ContextHistory(1, {"c": [context]})


def test_a_slot_is_billed_by_the_context_in_force_at_its_start():
    power = BilledMeter("api_calls", Aggregation.SUM, "ev", "mtr_1", Decimal("0.5"), "usd")
    change = T0 + timedelta(minutes=20)
    history = ContextHistory(1, {"c": [
        Context("c", EPOCH, "power", "cus_1", "sub_1", {"api_calls": power}),
        Context("c", change, None, "cus_1", "sub_1", {}),
    ]})  # fmt: skip
    usage = [_usage(T0, 10), _usage(change, 4)]
    plan = plan_revisions(history, usage, {}, {"c": [change]}, T0 + timedelta(hours=1), T0)
    assert [(r.slot_start, r.value) for r in plan.rows] == [(T0, Decimal(10))]


def _usage(start, total):
    return SlotUsage("c", "api_calls", start, Decimal(total), Decimal(total), Decimal(total), 1)


def test_plan_sends_only_complete_slots_and_corrections_for_the_difference():
    until = T0 + timedelta(hours=2, minutes=30)
    usage = [_usage(T0, 10), _usage(T0 + timedelta(hours=1), 4), _usage(T0 + timedelta(hours=2), 9)]
    reported = {("c", "api_calls", T0): Reported(1, Decimal(7), Decimal(7))}
    plan = plan_revisions(_scope(), usage, reported, {}, until, T0 - timedelta(days=30))
    assert [(r.slot_start, r.revision, r.value, r.status) for r in plan.rows] == [
        (T0, 2, Decimal(3), "pending"),
        (T0 + timedelta(hours=1), 1, Decimal(4), "pending"),
    ]
    assert plan.rows[0].identifier.endswith("-r2") and plan.alerts == []


def test_plan_never_sends_a_decrease_or_too_late_usage():
    reported = {("c", "api_calls", T0): Reported(1, Decimal(7), Decimal(7))}
    late = T0 - timedelta(days=40)
    plan = plan_revisions(
        _scope(),
        [_usage(T0, 5), _usage(late, 3)],
        reported,
        {},
        T0 + timedelta(days=1),
        T0 - timedelta(days=34),
    )
    assert [(r.slot_start, r.status) for r in plan.rows] == [(late, "rejected")]
    assert sorted(a.kind for a in plan.alerts) == ["too_late_for_stripe", "value_mismatch"]


def test_plan_for_last_value_meters_sends_the_new_value():
    scope = _scope(Aggregation.MAX)
    reported = {("c", "api_calls", T0): Reported(1, Decimal(7), Decimal(7))}
    plan = plan_revisions(
        scope, [_usage(T0, 9)], reported, {}, T0 + timedelta(hours=1), T0 - timedelta(days=1)
    )
    assert [(r.value, r.total) for r in plan.rows] == [(Decimal(9), Decimal(9))]
    same = {("c", "api_calls", T0): Reported(2, Decimal(16), Decimal(9))}
    assert plan_revisions(scope, [_usage(T0, 9)], same, {}, T0 + timedelta(hours=1), T0).rows == []
