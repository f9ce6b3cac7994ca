"""Period arithmetic: calendar periods and billing periods (Hypothesis for the edge cases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from meterline.catalog import ResetPeriod
from meterline.entitlements import add_months, billing_period, calendar_period

times = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 12, 31), timezones=st.just(UTC)
)
resets = st.sampled_from([ResetPeriod.DAY, ResetPeriod.WEEK, ResetPeriod.MONTH])


def test_add_months_clamps_to_month_end_and_knows_leap_years() -> None:
    jan31 = datetime(2024, 1, 31, 12, tzinfo=UTC)
    assert add_months(jan31, 1) == datetime(2024, 2, 29, 12, tzinfo=UTC)
    assert add_months(jan31, 13) == datetime(2025, 2, 28, 12, tzinfo=UTC)
    assert add_months(jan31, 2) == datetime(2024, 3, 31, 12, tzinfo=UTC)
    assert add_months(datetime(2023, 12, 15, tzinfo=UTC), 1) == datetime(2024, 1, 15, tzinfo=UTC)


def test_calendar_week_starts_monday_utc() -> None:
    p = calendar_period(ResetPeriod.WEEK, datetime(2026, 11, 22, 23, 59, tzinfo=UTC))  # a Sunday
    assert p.start == datetime(2026, 11, 16, tzinfo=UTC)
    assert p.end == datetime(2026, 11, 23, tzinfo=UTC)


def test_leap_february_month() -> None:
    p = calendar_period(ResetPeriod.MONTH, datetime(2028, 2, 29, 5, tzinfo=UTC))
    assert (p.start, p.end) == (datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC))


@given(times, resets)
def test_calendar_period_holds_now_and_is_aligned(now: datetime, reset: ResetPeriod) -> None:
    p = calendar_period(reset, now)
    assert p.contains(now)
    assert (p.start.hour, p.start.minute, p.start.second, p.start.microsecond) == (0, 0, 0, 0)
    if reset is ResetPeriod.DAY:
        assert p.end - p.start == timedelta(days=1)
    elif reset is ResetPeriod.WEEK:
        assert p.start.weekday() == 0 and p.end - p.start == timedelta(days=7)
    else:
        assert p.start.day == 1 and p.end.day == 1
        assert 28 <= (p.end - p.start).days <= 31


@given(times, st.integers(1, 12), st.integers(-40, 40), st.integers(0, 10**6))
def test_billing_period_by_months(anchor: datetime, months: int, shift: int, jitter: int) -> None:
    """Not aligned to calendar months; rolled any number of periods either way."""
    end = add_months(anchor, months)
    now = add_months(anchor, shift) + timedelta(seconds=jitter % 86_400)
    p = billing_period(anchor, end, now)
    assert p.contains(now)
    assert p.start.day == min(anchor.day, p.start.day) and p.start.time() == anchor.time()
    k = round((p.start.year * 12 + p.start.month - anchor.year * 12 - anchor.month) / months)
    assert p.start == add_months(anchor, k * months)
    assert p.end == add_months(anchor, (k + 1) * months)


@given(times, st.sampled_from([1, 7, 3]), st.integers(-1000, 1000))
def test_billing_period_by_fixed_length(anchor: datetime, days: int, hours: int) -> None:
    length = timedelta(days=days)
    now = anchor + timedelta(hours=hours)
    p = billing_period(anchor, anchor + length, now)
    assert p.contains(now)
    assert p.end - p.start == length
    assert (p.start - anchor) % length == timedelta(0)


def test_billing_period_rolls_forward_past_a_stale_end() -> None:
    start = datetime(2026, 1, 31, 9, tzinfo=UTC)
    end = datetime(2026, 2, 28, 9, tzinfo=UTC)
    p = billing_period(start, end, datetime(2026, 3, 30, tzinfo=UTC))
    assert (p.start, p.end) == (end, datetime(2026, 3, 31, 9, tzinfo=UTC))
