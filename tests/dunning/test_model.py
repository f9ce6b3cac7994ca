"""The pure transitions under any order of Stripe's news and job runs (Hypothesis): each step
announced once at most, never before its time, none after the end, the recovery offer only
after the downgrade, and `restored` exactly when a payment came after the downgrade."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from meterline.dunning.model import DunningPolicy, Sequence, Situation, observe, take_due
from tests.dunning.support import T0, invoice

POLICY = DunningPolicy()
WHERE = Situation(1, "c1", "past_due", "basic", "free")

actions = st.lists(
    st.one_of(
        st.tuples(st.just("fail"), st.integers(1, 5)),  # Stripe's invoice after k attempts
        st.tuples(st.just("job"), st.integers(0, 4 * 24)),  # hours pass, then the job runs
        st.tuples(st.just("pay"), st.just(0)),
        st.tuples(st.just("unpaid"), st.just(0)),  # the subscription's status event
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(actions)
def test_each_step_once_in_time_and_never_after_the_end(steps: list[tuple[str, int]]) -> None:
    seq: Sequence | None = None
    now, announced, paid, status = T0, [], False, "past_due"
    for kind, n in steps:
        if kind == "job":
            now += timedelta(hours=n)
            if seq is None:
                continue
            outcome = take_due(seq, now, POLICY)
        else:
            status = "unpaid" if kind == "unpaid" else status
            facts = invoice(n) if kind == "fail" else invoice(5)
            if kind == "pay" or paid:
                facts, paid = replace(facts, status="paid", next_payment_attempt=None), True
            outcome = observe(seq, facts, replace(WHERE, status=status), now, POLICY)
        if seq is not None and seq.ended is not None:
            assert outcome.taken == (), "nothing after the end"
        seq = outcome.sequence
        announced += outcome.taken
        if seq is not None:
            _check(seq, now)
    assert len(announced) == len(set(announced)), announced
    if seq is not None:
        assert seq.restored == (seq.ended == "paid" and "downgraded" in seq.steps)


def _check(seq: Sequence, now: object) -> None:
    steps = seq.steps
    assert "notice" in steps
    if "reminder" in steps:
        assert steps["reminder"] >= seq.started_at + POLICY.reminder_after
    if "final_warning" in steps:
        assert seq.attempt_count >= POLICY.retries
    if "recovery_offer" in steps:
        assert steps["recovery_offer"] >= steps["downgraded"] + POLICY.recovery_after
    if "downgraded" in steps:
        assert seq.downgraded_to == "free"
