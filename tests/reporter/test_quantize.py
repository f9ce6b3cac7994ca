"""Stripe's 15 significant digits: the quantizing rule, and values beyond it end to end."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterline.stripe.meter_events import (
    STRIPE_SIGNIFICANT_DIGITS,
    quantize,
    quantum,
    same_under_quantum,
)
from tests.reporter.support import add_usage, emulator_clock, make_world, reporter_for

values = st.decimals(min_value=0, max_value=Decimal("1e15"), allow_nan=False, places=12)


def _digits(value: Decimal) -> int:
    return len(value.normalize().as_tuple().digits)


@given(values)
def test_quantize_fits_stripe_and_moves_at_most_half_a_unit(value):
    q = quantize(value)
    assert _digits(q) <= STRIPE_SIGNIFICANT_DIGITS
    assert abs(q - value) * 2 <= quantum(value)
    assert quantize(q) == q
    assert same_under_quantum(q, value)


@given(values)
def test_values_that_fit_are_sent_exactly(value):
    if _digits(value) <= STRIPE_SIGNIFICANT_DIGITS:
        assert quantize(value) == value


def test_ties_round_to_even():
    assert quantize(Decimal("0.1234567890123425")) == Decimal("0.123456789012342")
    assert quantize(Decimal("0.1234567890123435")) == Decimal("0.123456789012344")
    assert quantize(Decimal("1234567890123456789")) == Decimal("1234567890123460000")


@pytest.mark.integration
def test_sixteen_digit_value_is_sent_quantized_and_reconciles_clean(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    c = next(iter(world.customers.values()))
    when = (clock.now() - timedelta(days=1)).replace(hour=10, minute=5)
    add_usage(world, c.key, when, Decimal("1234567.123456789012"))
    report = reporter.push()
    assert (report.delivered, report.rejected) == (1, 0)
    (event,) = control.meter_events(event_name=world.event_name)
    assert (event["status"], event["value"]) == ("accepted", "1234567.12345679")
    assert reporter.push().slots == 0  # the rounding residue is not a correction

    (result,) = reporter.reconcile(when.date(), "manual")
    assert result.discrepancies == []
    assert reporter.store.alerts(world.tenant_id) == []


@pytest.mark.integration
def test_stripe_float_sum_matches_within_the_15_digit_rule(
    pg_conninfo, stripe_emulator, stripe_client
):
    control = stripe_emulator.control
    world = make_world(pg_conninfo, stripe_client, n_customers=1)
    clock = emulator_clock(control)
    reporter = reporter_for(world, stripe_client, clock)
    c = next(iter(world.customers.values()))
    when = (clock.now() - timedelta(days=1)).replace(hour=10, minute=5)
    add_usage(world, c.key, when, Decimal("10000000000"))
    assert reporter.push().delivered == 1
    add_usage(world, c.key, when + timedelta(minutes=1), Decimal("0.123456789"))
    assert reporter.push().delivered == 1  # a correction; the exact sum has 20 digits

    (result,) = reporter.reconcile(when.date(), "manual")
    assert result.discrepancies == []
