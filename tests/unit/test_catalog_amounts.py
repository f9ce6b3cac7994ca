"""Invoice line amounts of metered prices, on the examples of Stripe's documentation."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterline.catalog.amounts import difference_amount, line_amount
from meterline.catalog.model import MeteredPrice, Package, Rounding, Tier, TiersMode
from tests.reporter.oracle.calculator import cents
from tests.unit.catalog_strategies import metered_prices

D = Decimal
VOLUME = MeteredPrice(
    "usd",
    tiers=(Tier(5, D(700)), Tier(10, D(650)), Tier(None, D(600))),
    tiers_mode=TiersMode.VOLUME,
)
GRADUATED = MeteredPrice(
    "usd", tiers=(Tier(5, D(500)), Tier(None, D(400))), tiers_mode=TiersMode.GRADUATED
)


@pytest.mark.parametrize(("units", "cents"), [(5, 3500), (6, 3900), (20, 12000), (25, 15000)])
def test_volume_tiers_price_every_unit_at_the_reached_tier(units, cents):
    assert line_amount(VOLUME, D(units)) == cents


def test_graduated_tiers_price_each_unit_at_its_own_tier():
    assert line_amount(GRADUATED, D(6)) == 2900


def test_a_package_counts_started_or_completed_groups():
    up = MeteredPrice("usd", package=Package(60, Rounding.UP, D(1000)))
    down = MeteredPrice("usd", package=Package(60, Rounding.DOWN, D(1000)))
    assert (line_amount(up, D(150)), line_amount(down, D(150))) == (3000, 2000)


def test_a_line_is_rounded_once_half_up():
    assert line_amount(MeteredPrice("usd", per_unit=D("0.05")), D(30)) == 2  # 1.5 -> 2


def test_included_units_are_free_and_a_difference_inside_them_costs_nothing():
    power = MeteredPrice("usd", per_unit=D("0.05"), included=100_000)
    assert line_amount(power, D(49)) == 0
    assert line_amount(power, D(100_040)) == 2
    assert difference_amount(power, D(60_000), D(20_000)) == 0
    assert difference_amount(power, D(100_040), D(99_000)) == 2


@given(metered_prices("usd", may_include=True), st.integers(1, 10**8))
def test_the_line_amount_agrees_with_the_money_oracles_own_calculator(price, units):
    """Two implementations of Stripe's rules, written apart (tests/reporter/oracle)."""
    assert line_amount(price, D(units)) == cents(price.to_document(), units)
