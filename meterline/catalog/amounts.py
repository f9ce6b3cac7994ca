"""What an invoice line charges for a period's usage under a metered price, as Stripe bills it.

One rule, after STRIPE-BILLING.md §a: per unit, `units x unit_amount_decimal`; a package,
`ceil` or `floor(units / divide_by) x amount_decimal`; graduated tiers, each unit at its own
tier plus the flat amount of every tier reached (the first tier's also at zero usage, the
emulator's default); volume tiers, every unit at the reached tier plus that tier's flat
amount. `included` units are a free first graduated tier (`MeteredPrice.stripe_tiers`). The
line is rounded once, half up, to the minor unit. Reconciliation prices a difference of units
as the difference of two such lines, never as units times a marginal price: inside included
or cheaper tiers the marginal price is wrong.

- A price has exactly one of `unit_amount_decimal`, `tiers` (with `tiers_mode`) or `package`.
- `included: N` makes the first N units of each billing period free. It is sugar for a free
  first graduated tier (`up_to: N` at 0): Stripe gets a graduated price (`stripe_tiers()`),
  not a discount. Tier bounds stay absolute (as Stripe's), so with tiers the first `up_to` must
  be above N. It is refused with `volume` (there a free first tier frees nothing once usage
  passes it) and with `package` (Stripe cannot combine `transform_quantity` with tiers).
- Tiers: `up_to` an integer >= 1, strictly increasing, `inf` for the last tier only and
  required there; each tier has `unit_amount_decimal`, `flat_amount_decimal` or both.
- `package`: `divide_by` an integer >= 1, `round` up or down, `amount_decimal` per package.
- How Stripe computes each form (and rounds the line) is in `/work/shared/STRIPE-BILLING.md`
  §a; the Stripe emulator follows it, and `amounts.line_amount` computes a line by the same
  rule (the reporter prices alerts with it: `line(expected) - line(held)` for the period).
  `MeteredPrice.unit_amount_decimal` is only the marginal price of one unit past every
  boundary (the last tier's unit amount, a package's amount over its units), shown beside an
  alert; it is not a line amount and prices no difference.

**Limits against included units.** A plan's metered feature and the price of its meter
describe one allowance, so where a graduated price leaves the first units of a period free
(`included`, or leading tiers written out at 0) the plan must agree with them, or it is refused
with the path that sets where the free units end (`included` or `tiers[i].up_to`), or of the
feature's `reset`:
- `overage: block` with a `limit` below the free units: the included units past the limit can
  never be used;
- `overage: allow` with a `limit` other than the free units: "allow" means usage past the limit
  is granted and billed, so billing must start at the limit, neither before nor after it;
- a `limit` compared with free units must reset per `billing_period`, since Stripe's tiers
  count a billing period's usage.

Blocking above the free units (billed in between), an unlimited feature, volume and package
prices, and a per-unit price without `included` are accepted. A price without free units bills
from the first unit; with `overage: allow` and a limit that bills usage inside the limit, which
is what the example catalog used to do. It stays accepted because catalogs stored before
`included` existed have that shape and must still load: the rules only concern `included` and
tiers, which no older catalog has, so no stored catalog that was valid becomes invalid.
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
