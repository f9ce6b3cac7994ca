"""The oracle's calculator: what an invoice must charge, from the price list and the events.

Written from Stripe's documented rules (STRIPE-BILLING.md §a) and the catalog document alone;
it imports nothing from reporter/ or from meterline's pricing, so a mistake there cannot hide
here. A price is the catalog's plain document (`unit_amount_decimal`, `tiers` with
`tiers_mode`, `package`, `included`); amounts are in cents, each line rounded half up once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

Price = Mapping[str, Any]


def cents(price: Price, units: int | Decimal) -> int:
    """One invoice line of `units` (a period's usage) at `price`, rounded half up."""
    exact = _exact(price, Decimal(units))
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _exact(price: Price, q: Decimal) -> Decimal:
    if "package" in price:
        pack = price["package"]
        rounding = ROUND_CEILING if pack["round"] == "up" else ROUND_FLOOR
        return (q / pack["divide_by"]).to_integral_value(rounding) * Decimal(pack["amount_decimal"])
    tiers = list(price.get("tiers", ()))
    included = int(price.get("included", 0))
    if "unit_amount_decimal" in price:
        rate = Decimal(price["unit_amount_decimal"])
        return max(q - included, Decimal(0)) * rate
    if price["tiers_mode"] == "volume":
        return _volume(tiers, q)
    return _graduated(tiers, q, included)


def _bound(tier: Mapping[str, Any]) -> Decimal | None:
    return None if tier["up_to"] == "inf" else Decimal(tier["up_to"])


def _rates(tier: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    unit = Decimal(tier.get("unit_amount_decimal", "0"))
    return unit, Decimal(tier.get("flat_amount_decimal", "0"))


def _volume(tiers: list[Mapping[str, Any]], q: Decimal) -> Decimal:
    for tier in tiers:
        bound = _bound(tier)
        if bound is None or q <= bound:
            unit, flat = _rates(tier)
            return q * unit + flat
    raise AssertionError("a volume price ends with an inf tier")


def _graduated(tiers: list[Mapping[str, Any]], q: Decimal, included: int) -> Decimal:
    """Units past `included` walk the tiers (whose bounds count from the period's first
    unit); a tier's flat amount is due once any unit falls in it."""
    total = Decimal(0)
    floor = Decimal(included)
    for tier in tiers:
        bound = _bound(tier)
        top = q if bound is None else min(q, bound)
        if top > floor:
            unit, flat = _rates(tier)
            total += (top - floor) * unit + flat
        if bound is None or q <= bound:
            break
        floor = max(floor, bound)
    return total


def ceil_minute(t: datetime) -> datetime:
    """A boundary as invoices see it: the minute that holds it still bills before it."""
    whole = t.replace(second=0, microsecond=0)
    return whole if whole == t else whole + timedelta(minutes=1)


def units_between(events: Iterable[tuple[datetime, int]], start: datetime | None,
                  end: datetime | None) -> int:  # fmt: skip
    """The usage of the events stamped in [start, end) (None: unbounded)."""
    return sum(
        v for ts, v in events if (start is None or ts >= start) and (end is None or ts < end)
    )
