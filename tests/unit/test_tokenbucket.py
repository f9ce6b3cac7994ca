"""The token-bucket arithmetic both limiters use: refill up to capacity, take with or without
debt."""

from __future__ import annotations

import pytest

from meterline.tokenbucket import refill, take


def test_refill_accrues_at_the_rate_up_to_the_capacity() -> None:
    assert refill(0.0, 10.0, 10.5, rate=4, capacity=10) == (2.0, 10.5)
    assert refill(9.0, 10.0, 20.0, rate=4, capacity=10) == (10.0, 20.0)


def test_a_clock_that_went_back_adds_nothing() -> None:
    assert refill(3.0, 10.0, 9.0, rate=4, capacity=10) == (3.0, 10.0)


def test_without_debt_a_take_needs_every_token_it_wants() -> None:
    assert take(1.0, 1, rate=10) == (0.0, 0.0)
    assert take(0.5, 1, rate=10) == pytest.approx((0.5, 0.05))
    assert take(1.0, 3, rate=10) == pytest.approx((1.0, 0.2))


def test_with_debt_a_take_passes_while_any_token_is_left_then_waits_the_debt_out() -> None:
    assert take(0.5, 100, rate=10, debt=True) == (-99.5, 0.0)
    assert take(-99.5, 1, rate=10, debt=True) == pytest.approx((-99.5, 10.05))
    assert take(0.0, 1, rate=10, debt=True) == pytest.approx((0.0, 0.1))
