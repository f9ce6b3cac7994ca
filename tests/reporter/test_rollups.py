"""The pure parts of last-value billing: running period maxima and revision timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from reporter.ledger import Reported
from reporter.push import revision_value
from reporter.rollups import running_maxima
from reporter.slots import SlotUsage, event_timestamp

T0 = datetime(2026, 11, 1, tzinfo=UTC)  # a month start: the period without boundaries
slots = st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 1000)),
    min_size=1,
    max_size=40,
    unique_by=lambda s: s[0],
)


@given(slots, st.lists(st.integers(1, 200), max_size=4), st.integers(0, 1000))
def test_running_maxima_is_the_max_of_the_period_so_far(hours, cuts, base):
    bounds = sorted({T0 + timedelta(hours=c) for c in cuts})
    usage = [
        SlotUsage("c", "m", T0 + timedelta(hours=h), Decimal(v), Decimal(v), Decimal(v), 1)
        for h, v in hours
    ]
    got = {u.start: u.peak for u in running_maxima(usage, {("c", "m", T0): Decimal(base)}, {})}
    assert got == {u.start: max(Decimal(base), *_before(usage, u.start)) for u in usage}

    split = {u.start: u.peak for u in running_maxima(usage, {}, {"c": [T0, *bounds]})}
    for u in usage:
        period = max(b for b in [T0, *bounds] if b <= u.start)
        assert split[u.start] == max(_before(usage, u.start, period))


def _before(usage, start, since=T0):
    return [u.peak for u in usage if since <= u.start <= start]


@given(st.integers(1, 500))
def test_each_revision_is_stamped_later_within_the_slots_first_minute(revision):
    stamp = event_timestamp(T0, revision)
    assert int(T0.timestamp()) <= stamp < int(T0.timestamp()) + 60
    if revision < 60:
        assert event_timestamp(T0, revision + 1) == stamp + 1


def test_revision_values_carry_the_rounding_residue_and_ignore_nothing_else():
    exact = Decimal("1234567.123456789012")
    assert revision_value("sum", exact, None) == Decimal("1234567.12345679")
    sent = Reported(1, Decimal("1234567.12345679"), Decimal("1234567.12345679"))
    assert revision_value("sum", exact, sent) is None
    assert revision_value("sum", exact + 1, sent) == Decimal("0.999999999012")
    assert revision_value("sum", exact - 1, sent) < 0
    assert revision_value("last", Decimal(7), Reported(2, Decimal(12), Decimal(7))) is None
    assert revision_value("last", Decimal(0), None) == 0
