"""How a price charges: its amount parameters at creation, its tiers on read, a line's amount.

Follows STRIPE-BILLING.md §a. A price is `per_unit` (`unit_amount` or `unit_amount_decimal`,
optionally with `transform_quantity`) or `tiered` (`tiers` with `tiers_mode` graduated or
volume). Tiers are kept under the internal `_tiers` key and shown only when expanded
(`expand[]=tiers`, `expand[]=data.tiers` on lists), as Stripe does. The points the facts mark
unverified follow `EmulatorConfig`: `amount_rounding`, `round_each_tier`,
`tier_flat_amount_at_zero_usage`, `package_line_quantity`, `unexpanded_tiers`.

- `billing_scheme=per_unit` (default): `unit_amount` or `unit_amount_decimal` (one, not both;
  at most 12 decimal places; `unit_amount` is null for a non-integral decimal), optionally
  `transform_quantity[divide_by|round]` (`divide_by` >= 1, `round` up or down).
- `billing_scheme=tiered`: `tiers_mode` graduated or volume and `tiers[n][up_to]` (an integer
  >= 1, strictly increasing, `inf` for the last tier only and required there) with
  `unit_amount` or `unit_amount_decimal` and/or `flat_amount` or `flat_amount_decimal`.
  Tiered prices refuse `unit_amount*` and `transform_quantity` ("Quantity transformation isn't
  compatible with tiered pricing"). Every violation is a 400 naming the parameter.
- Expanded tiers show the `inf` tier with `up_to: null`; unexpanded, the key is left out
  (`unexpanded_tiers="null"` shows it as null instead). Amounts are strings on the wire.

A line's amount for the quantity `q` (the period's usage, or a licensed quantity): per unit
`q x unit`; with `transform_quantity`, `ceil` or `floor` of `q / divide_by` packages x unit;
volume: the tier whose range holds `q` (the first tier whose `up_to >= q`) prices all of `q`,
plus that tier's flat amount; graduated: each unit at its own tier, plus the flat amount of
every tier with units in it. Fractional usage fills tiers continuously (the facts speak of
whole units only). The line is rounded once to minor units. Settings: `amount_rounding`
(`half_up`, the default, or `half_even`), `round_each_tier` (round each graduated tier before
summing; default off), `tier_flat_amount_at_zero_usage` (the first tier's flat amount is
charged when usage is 0; default on), `package_line_quantity` (a package line shows the usage,
`usage`, the default, or the number of packages, `packages`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Decimal,
    InvalidOperation,
)
from typing import Any

from .config import EmulatorConfig
from .core import public
from .errors import invalid, missing_param
from .forms import Params

JSON = dict[str, Any]
MAX_DECIMAL_PLACES = 12
ROUNDING = {"half_up": ROUND_HALF_UP, "half_even": ROUND_HALF_EVEN}
PACKAGE_ROUNDING = {"up": ROUND_CEILING, "down": ROUND_FLOOR}


def amount_fields(p: Params) -> JSON:
    """The price fields that say what it charges, validated as Stripe validates them."""
    scheme = p.str("billing_scheme") or "per_unit"
    if scheme == "tiered":
        return _tiered_fields(p)
    if scheme != "per_unit":
        raise invalid(f"Invalid billing_scheme: {scheme}", "billing_scheme")
    for name in ("tiers", "tiers_mode"):
        if name in p:
            raise invalid(f"{name} requires billing_scheme=tiered.", name)
    return {
        "billing_scheme": "per_unit",
        "tiers_mode": None,
        "_tiers": None,
        "transform_quantity": _transform(p),
        **_amount_pair(p, "unit_amount", required=True),
    }


def _tiered_fields(p: Params) -> JSON:
    mode = p.str("tiers_mode")
    if mode is None:
        raise missing_param("tiers_mode")
    if mode not in ("graduated", "volume"):
        raise invalid(f"Invalid tiers_mode: {mode}", "tiers_mode")
    if "transform_quantity" in p:
        raise invalid(
            "Quantity transformation isn't compatible with tiered pricing.", "transform_quantity"
        )
    for name in ("unit_amount", "unit_amount_decimal"):
        if name in p:
            raise invalid(f"{name} cannot be set with billing_scheme=tiered; use tiers.", name)
    raw = p.list("tiers")
    if not raw:
        raise missing_param("tiers")
    tiers = [_tier(Params(t) if isinstance(t, dict) else Params({}), i) for i, t in enumerate(raw)]
    _check_bounds(tiers)
    return {
        "billing_scheme": "tiered",
        "tiers_mode": mode,
        "_tiers": tiers,
        "transform_quantity": None,
        "unit_amount": None,
        "unit_amount_decimal": None,
    }


def _tier(t: Params, index: int) -> JSON:
    up_to = t.str("up_to")
    if up_to is None:
        raise missing_param(f"tiers[{index}][up_to]")
    if up_to != "inf" and not (up_to.isdigit() and int(up_to) >= 1):
        raise invalid(f"Invalid up_to: {up_to}", f"tiers[{index}][up_to]")
    tier = {
        "up_to": None if up_to == "inf" else int(up_to),
        **_amount_pair(t, "unit_amount", param=f"tiers[{index}]"),
        **_amount_pair(t, "flat_amount", param=f"tiers[{index}]"),
    }
    if tier["unit_amount_decimal"] is None and tier["flat_amount_decimal"] is None:
        raise invalid("Each tier needs a unit amount or a flat amount.", f"tiers[{index}]")
    return tier


def _check_bounds(tiers: list[JSON]) -> None:
    bounds = [t["up_to"] for t in tiers]
    if bounds[-1] is not None:
        raise invalid("The last tier must have up_to=inf.", f"tiers[{len(tiers) - 1}][up_to]")
    finite = bounds[:-1]
    if None in finite:
        raise invalid("Only the last tier can have up_to=inf.", "tiers")
    if any(b <= a for a, b in itertools.pairwise(finite)):
        raise invalid("Tier up_to values must be in increasing order.", "tiers")


def _amount_pair(p: Params, name: str, *, param: str = "", required: bool = False) -> JSON:
    """`name` (integer) or `name_decimal` (decimal string, <= 12 places): one, never both."""
    prefix = f"{param}[" if param else ""
    close = "]" if param else ""
    integer = p.int(name)
    text = p.str(f"{name}_decimal")
    if integer is not None and text is not None:
        raise invalid(
            f"You may only specify one of these parameters: {name}, {name}_decimal.",
            f"{prefix}{name}{close}",
        )
    if integer is None and text is None:
        if required:
            raise missing_param(name)
        return {name: None, f"{name}_decimal": None}
    if text is None:
        return {name: integer, f"{name}_decimal": str(integer)}
    value = _decimal(text, f"{prefix}{name}_decimal{close}")
    return {name: int(value) if value == value.to_integral() else None, f"{name}_decimal": text}


def _decimal(text: str, param: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise invalid(f"Invalid decimal: {param}", param) from None
    exponent = value.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if not value.is_finite() or value < 0 or places > MAX_DECIMAL_PLACES:
        raise invalid(f"Invalid decimal: {param}", param)
    return value


def _transform(p: Params) -> JSON | None:
    if "transform_quantity" not in p:
        return None
    t = p.sub("transform_quantity")
    divide_by = t.int("divide_by")
    if divide_by is None:
        raise missing_param("transform_quantity[divide_by]")
    if divide_by < 1:
        raise invalid("divide_by must be at least 1.", "transform_quantity[divide_by]")
    rounding = t.req("round")
    if rounding not in PACKAGE_ROUNDING:
        raise invalid(f"Invalid round: {rounding}", "transform_quantity[round]")
    return {"divide_by": divide_by, "round": rounding}


def view(price: JSON, expanded: bool, config: EmulatorConfig) -> JSON:
    """The price as the API answers it: `tiers` only when expanded (else per `unexpanded_tiers`)."""
    shown = dict(price)
    if expanded:
        shown["tiers"] = public(price.get("_tiers"))
    elif config.unexpanded_tiers == "null":
        shown["tiers"] = None
    return shown


def expands(p: Params, field: str) -> bool:
    """Whether `expand[]` asks for `field` (`tiers`, or `data.tiers` on a list)."""
    return field in p.list("expand")


@dataclass(frozen=True)
class LineAmount:
    """An invoice line's `amount` (minor units) and the `quantity` it shows."""

    amount: int
    quantity: Decimal


def line_amount(price: JSON, quantity: Decimal, config: EmulatorConfig) -> LineAmount:
    """What one line of `quantity` (the period's usage, or a licensed quantity) costs."""
    if price["billing_scheme"] == "tiered":
        parts = _tier_parts(price, quantity, config)
        return LineAmount(_round_parts(parts, config), quantity)
    unit = Decimal(price["unit_amount_decimal"])
    transform = price.get("transform_quantity")
    if transform is None:
        return LineAmount(round_amount(unit * quantity, config), quantity)
    packages = (quantity / transform["divide_by"]).to_integral_value(
        PACKAGE_ROUNDING[transform["round"]]
    )
    shown = packages if config.package_line_quantity == "packages" else quantity
    return LineAmount(round_amount(unit * packages, config), shown)


def _tier_parts(price: JSON, quantity: Decimal, config: EmulatorConfig) -> list[Decimal]:
    tiers = price["_tiers"]
    if price["tiers_mode"] == "volume":
        tier = next(t for t in tiers if t["up_to"] is None or quantity <= t["up_to"])
        flat = quantity > 0 or config.tier_flat_amount_at_zero_usage
        return [_amount(tier, "unit") * quantity + (_amount(tier, "flat") if flat else 0)]
    parts: list[Decimal] = []
    lower = Decimal(0)
    for index, tier in enumerate(tiers):
        upper = quantity if tier["up_to"] is None else min(quantity, Decimal(tier["up_to"]))
        units = max(upper - lower, Decimal(0))
        charged = units > 0 or (index == 0 and config.tier_flat_amount_at_zero_usage)
        if charged:
            parts.append(_amount(tier, "unit") * units + _amount(tier, "flat"))
        if tier["up_to"] is None or quantity <= tier["up_to"]:
            break
        lower = Decimal(tier["up_to"])
    return parts


def _amount(tier: JSON, kind: str) -> Decimal:
    text = tier[f"{kind}_amount_decimal"]
    return Decimal(0) if text is None else Decimal(text)


def _round_parts(parts: list[Decimal], config: EmulatorConfig) -> int:
    if config.round_each_tier:
        return sum((round_amount(part, config) for part in parts), 0)
    return round_amount(sum(parts, Decimal(0)), config)


def round_amount(amount: Decimal, config: EmulatorConfig) -> int:
    """`amount` in minor units, rounded as `amount_rounding` says."""
    return int(amount.quantize(Decimal(1), rounding=ROUNDING[config.amount_rounding]))
