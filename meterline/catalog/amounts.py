"""What an invoice line charges for a period's usage under a metered price, as Stripe bills it.

One rule, after STRIPE-BILLING.md §a: per unit, `units x unit_amount_decimal`; a package,
`ceil` or `floor(units / divide_by) x amount_decimal`; graduated tiers, each unit at its own
tier plus the flat amount of every tier reached (the first tier's also at zero usage, the
emulator's default); volume tiers, every unit at the reached tier plus that tier's flat
amount. `included` units are a free first graduated tier (`MeteredPrice.stripe_tiers`). The
line is rounded once, half up, to the minor unit. Reconciliation prices a difference of units
as the difference of two such lines, never as units times a marginal price: inside included
or cheaper tiers the marginal price is wrong.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from meterline.catalog.model import MeteredPrice, Rounding, Tier, TiersMode

_PACKAGE_ROUNDING = {Rounding.UP: ROUND_CEILING, Rounding.DOWN: ROUND_FLOOR}


def line_amount(price: MeteredPrice, units: Decimal) -> Decimal:
    """The invoice line for `units` (a period's usage, >= 0) in minor units, rounded."""
    return _exact(price, max(units, Decimal(0))).quantize(Decimal(1), rounding=ROUND_HALF_UP)


def difference_amount(price: MeteredPrice, expected: Decimal, held: Decimal) -> Decimal:
    """|line(expected) - line(held)|: the money a period's invoice is off by when Stripe holds
    `held` units of it instead of `expected`."""
    return abs(line_amount(price, expected) - line_amount(price, held))


def _exact(price: MeteredPrice, units: Decimal) -> Decimal:
    if price.package is not None:
        package = price.package
        groups = (units / package.divide_by).to_integral_value(_PACKAGE_ROUNDING[package.round])
        return groups * package.amount_decimal
    tiers = price.stripe_tiers()
    if not tiers:
        return units * (price.per_unit or Decimal(0))
    if price.stripe_tiers_mode is TiersMode.VOLUME:
        return _volume(tiers, units)
    return _graduated(tiers, units)


def _volume(tiers: tuple[Tier, ...], units: Decimal) -> Decimal:
    tier = next(t for t in tiers if t.up_to is None or units <= t.up_to)
    return units * (tier.unit_amount_decimal or 0) + (tier.flat_amount_decimal or 0)


def _graduated(tiers: tuple[Tier, ...], units: Decimal) -> Decimal:
    total = Decimal(0)
    lower = Decimal(0)
    for index, tier in enumerate(tiers):
        upper = units if tier.up_to is None else min(units, Decimal(tier.up_to))
        within = max(upper - lower, Decimal(0))
        if within > 0 or index == 0:
            total += within * (tier.unit_amount_decimal or 0) + (tier.flat_amount_decimal or 0)
        if tier.up_to is None or units <= tier.up_to:
            break
        lower = Decimal(tier.up_to)
    return total
