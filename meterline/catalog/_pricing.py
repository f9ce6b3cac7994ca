"""Reading a plan's metered prices, and checking them against the plan's metered limits.

A metered price is one of three forms, as Stripe prices it: per unit (`unit_amount_decimal`),
tiered (`tiers` with `tiers_mode`), or a package (`package`). `included` adds a free first
graduated tier. Every problem is recorded with its path; see README.md for the rules and why.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from decimal import Decimal

from meterline.catalog import _reading as rd
from meterline.catalog._reading import Context, Entry, Invalid, Path
from meterline.catalog.model import (
    FeatureKind,
    MeteredEntitlement,
    MeteredPrice,
    Overage,
    Package,
    PlanEntitlement,
    ResetPeriod,
    Rounding,
    Tier,
    TiersMode,
)

FORMS = ("unit_amount_decimal", "tiers", "package")
_FIELDS = ("unit_amount_decimal", "tiers_mode", "tiers", "package", "included")
INF = "inf"


def metered_price(ctx: Context, raw: object, path: Path) -> MeteredPrice | None:
    """The price at `path`, or `None` (with its problems recorded) when anything is wrong."""
    entry = Entry(ctx, raw, path, ("currency",), _FIELDS)
    forms = [form for form in FORMS if entry.has(form)]
    if len(forms) != 1:
        found = f"it has {rd.one_of(forms)}" if forms else "it has none"
        ctx.fail(path, f"must have exactly one of {rd.one_of(FORMS)} ({found})")
    mode = entry.get("tiers_mode", rd.choice(TiersMode), None)
    if entry.has("tiers") != entry.has("tiers_mode"):
        entry.fail("tiers_mode", "tiers and tiers_mode go together")
    price = MeteredPrice(
        currency=entry.get("currency", rd.currency, ""),
        per_unit=entry.get("unit_amount_decimal", rd.unit_amount_decimal, None),
        tiers=_tiers(ctx, entry.fields["tiers"], (*path, "tiers")) if entry.has("tiers") else (),
        tiers_mode=mode,
        package=_package(ctx, entry.fields["package"], (*path, "package"))
        if entry.has("package")
        else None,
        included=entry.get("included", rd.integer(0), 0),
    )
    _check_included_form(entry, price)
    return None if entry.failed else price


def _tiers(ctx: Context, raw: object, path: Path) -> tuple[Tier, ...]:
    if not isinstance(raw, list) or not raw:
        ctx.fail(path, f"must be a non-empty list of tiers, not {rd.type_name(raw)}")
        return ()
    before = len(ctx.problems)
    tiers = tuple(_tier(ctx, item, (*path, index)) for index, item in enumerate(raw))
    if len(ctx.problems) == before:
        _check_bounds(ctx, path, tiers)
    return tiers


def _tier(ctx: Context, raw: object, path: Path) -> Tier:
    entry = Entry(ctx, raw, path, ("up_to",), ("unit_amount_decimal", "flat_amount_decimal"))
    if entry.fields and not (entry.has("unit_amount_decimal") or entry.has("flat_amount_decimal")):
        ctx.fail(path, "needs unit_amount_decimal, flat_amount_decimal or both")
    return Tier(
        up_to=entry.get("up_to", _up_to, None),
        unit_amount_decimal=entry.get("unit_amount_decimal", rd.unit_amount_decimal, None),
        flat_amount_decimal=entry.get("flat_amount_decimal", rd.unit_amount_decimal, None),
    )


def _up_to(value: object) -> int | None:
    if value == INF:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise Invalid('must be an integer >= 1, or "inf" for the last tier')


def _check_bounds(ctx: Context, path: Path, tiers: tuple[Tier, ...]) -> None:
    """Stripe's rules: bounds strictly increase, and only the last tier is (and must be) `inf`."""
    for index, tier in enumerate(tiers[:-1]):
        if tier.up_to is None:
            ctx.fail((*path, index, "up_to"), '"inf" is for the last tier only')
    last = tiers[-1]
    if last.up_to is not None:
        ctx.fail((*path, len(tiers) - 1, "up_to"), 'the last tier must be "inf" (no upper bound)')
    bounds = [(i, t.up_to) for i, t in enumerate(tiers) if t.up_to is not None]
    for (_, before), (index, bound) in itertools.pairwise(bounds):
        if bound <= before:
            ctx.fail((*path, index, "up_to"), f"must be above the previous tier's {before}")


def _package(ctx: Context, raw: object, path: Path) -> Package | None:
    entry = Entry(ctx, raw, path, ("divide_by", "round", "amount_decimal"))
    package = Package(
        divide_by=entry.get("divide_by", rd.integer(1), 1),
        round=entry.get("round", rd.choice(Rounding), Rounding.UP),
        amount_decimal=entry.get("amount_decimal", rd.unit_amount_decimal, Decimal(0)),
    )
    return None if entry.failed else package


def _check_included_form(entry: Entry, price: MeteredPrice) -> None:
    problem = _included_problem(price)
    if problem is not None:
        entry.fail("included", problem)


def _included_problem(price: MeteredPrice) -> str | None:
    if not price.included:
        return None
    if price.package is not None:
        return (
            "a package price cannot include units (Stripe cannot combine transform_quantity "
            "with tiers); use graduated tiers"
        )
    if price.tiers_mode is TiersMode.VOLUME:
        return (
            "volume tiers price every unit at the reached tier, so nothing stays included past "
            "it; write a free first tier instead"
        )
    first = price.tiers[0].up_to if price.tiers else None
    if first is not None and first <= price.included:
        return (
            f"must be below the first tier's up_to ({first}); tier bounds count every unit of "
            "the period, the included ones too"
        )
    return None


def check_included(
    ctx: Context,
    plan_path: Path,
    prices: Mapping[str, MeteredPrice],
    features: Mapping[str, PlanEntitlement],
) -> None:
    """Refuse a plan whose metered limits contradict the free units of its prices."""
    for feature, entitlement in features.items():
        meter = ctx.feature_meters.get(feature)
        price = prices.get(meter) if meter is not None else None
        free = free_units(price) if price is not None else None
        if free is None or not isinstance(entitlement, MeteredEntitlement):
            continue
        if ctx.features.get(feature) is not FeatureKind.METERED or entitlement.limit is None:
            continue
        units, where = free
        price_path = (*plan_path, "metered_prices", str(meter))
        problem = _contradiction(feature, entitlement, units)
        if problem is not None:
            ctx.fail((*price_path, *where), problem)
        if entitlement.reset is not ResetPeriod.BILLING_PERIOD:
            ctx.fail(
                (*plan_path, "features", feature, "reset"),
                f"must be billing_period: metered_prices.{meter} includes units per billing "
                f"period (Stripe's tiers count a period), so a limit compared with them must "
                f"reset then too",
            )


def free_units(price: MeteredPrice) -> tuple[int, Path] | None:
    """The units a period gets free before a graduated price charges, with the path (under the
    price) that sets where they end: `included`, or the `up_to` of the last free leading tier.
    `None` when the first unit is charged, or for volume and package prices."""
    if price.stripe_tiers_mode is not TiersMode.GRADUATED:
        return None
    found: tuple[int, Path] | None = None
    offset = 1 if price.included else 0
    for index, tier in enumerate(price.stripe_tiers()):
        if tier.up_to is None or tier.unit_amount_decimal or tier.flat_amount_decimal:
            break
        at_sugar = index < offset
        found = (tier.up_to, ("included",) if at_sugar else ("tiers", index - offset, "up_to"))
    return found


def _contradiction(feature: str, entitlement: MeteredEntitlement, free: int) -> str | None:
    limit = entitlement.limit
    assert limit is not None
    if entitlement.overage is Overage.BLOCK and limit < free:
        return (
            f"includes {free} units but features.{feature} blocks at {limit}: "
            f"the included units past {limit} can never be used"
        )
    if entitlement.overage is Overage.ALLOW and limit != free:
        return (
            f"includes {free} units but features.{feature} allows and bills usage past its "
            f"limit {limit}: the included units must end at the limit"
        )
    return None
