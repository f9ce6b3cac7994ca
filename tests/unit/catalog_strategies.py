"""Hypothesis strategies for valid catalogs, shared by the catalog test modules."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from meterline.catalog import (
    Aggregation,
    BooleanEntitlement,
    Catalog,
    FallbackPolicy,
    Feature,
    FeatureKind,
    Interval,
    Meter,
    MeteredEntitlement,
    MeteredPrice,
    Overage,
    Package,
    PastDuePolicy,
    PaymentPolicies,
    Plan,
    PlanEntitlement,
    Price,
    ResetPeriod,
    Rounding,
    StaticEntitlement,
    StaticValue,
    Tier,
    TiersMode,
)

_TEXT = st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs"))
keys = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
names = st.none() | st.text(_TEXT, min_size=1, max_size=30).filter(str.strip)
static_values: st.SearchStrategy[StaticValue] = (
    st.text(_TEXT, max_size=30)
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
)
fractional_limits = st.decimals(min_value=0, max_value=10**9, places=3).filter(
    lambda d: d != d.to_integral_value()
)
limits = st.none() | st.integers(0, 10**15) | fractional_limits
currencies = st.sampled_from(["usd", "eur", "gbp"])
unit_amounts = st.decimals(min_value=0, max_value=10**4, places=6).map(lambda d: Decimal(str(d)))


amounts = st.none() | unit_amounts


@st.composite
def tier_lists(draw: st.DrawFn, above: int = 0) -> tuple[Tier, ...]:
    """Strictly increasing bounds above `above`, then the `inf` tier; each tier charges."""
    bounds = draw(st.lists(st.integers(above + 1, 10**7), unique=True, max_size=3))
    tiers = []
    for up_to in [*sorted(bounds), None]:
        unit, flat = draw(amounts), draw(amounts)
        tiers.append(
            Tier(up_to, unit if unit is not None or flat is not None else Decimal(0), flat)
        )
    return tuple(tiers)


@st.composite
def metered_prices(draw: st.DrawFn, currency: str, may_include: bool) -> MeteredPrice:
    """Any form: per unit, graduated or volume tiers, or a package. Free units (`included`, or a
    free first graduated tier) only when `may_include`: limits on the meter must match them."""
    included = draw(st.integers(0, 10**6)) if may_include else 0
    form = draw(st.sampled_from(["per_unit", "graduated", "volume", "package"]))
    if form == "per_unit":
        return MeteredPrice(currency, per_unit=draw(unit_amounts), included=included)
    if form == "package":
        package = st.builds(Package, st.integers(1, 10**4), st.sampled_from(Rounding), unit_amounts)
        return MeteredPrice(currency, package=draw(package))
    mode = TiersMode(form)
    kept = included if mode is TiersMode.GRADUATED else 0
    tiers = draw(tier_lists(kept))
    if not may_include:
        first = tiers[0]
        tiers = (Tier(first.up_to, first.unit_amount_decimal, Decimal(1)), *tiers[1:])
    return MeteredPrice(currency, tiers=tiers, tiers_mode=mode, included=kept)


@st.composite
def meters(draw: st.DrawFn, key: str) -> Meter:
    return Meter(
        key=key,
        aggregation=draw(st.sampled_from(Aggregation)),
        value_property=draw(st.sampled_from(["value", "total", "n_tokens"])),
        name=draw(names),
    )


@st.composite
def features(draw: st.DrawFn, key: str, meter_keys: list[str]) -> Feature:
    kinds = list(FeatureKind) if meter_keys else [FeatureKind.BOOLEAN, FeatureKind.STATIC]
    kind = draw(st.sampled_from(kinds))
    meter = draw(st.sampled_from(meter_keys)) if kind is FeatureKind.METERED else None
    value = draw(st.none() | static_values) if kind is FeatureKind.STATIC else None
    return Feature(key=key, kind=kind, meter=meter, value=value, name=draw(names))


thresholds = st.lists(
    st.integers(1, 1000) | st.decimals("0.5", "999.5", places=1).filter(lambda d: d % 1 != 0),
    max_size=10,
    unique=True,
).map(lambda ps: tuple(sorted(ps)))


def entitlements(feature: Feature) -> st.SearchStrategy[PlanEntitlement]:
    if feature.kind is FeatureKind.METERED:
        return st.builds(
            MeteredEntitlement,
            limit=limits,
            reset=st.sampled_from(ResetPeriod),
            overage=st.sampled_from(Overage),
            notify_at=st.none() | thresholds,
        )
    if feature.kind is FeatureKind.BOOLEAN:
        return st.builds(BooleanEntitlement, st.booleans())
    return st.builds(StaticEntitlement, static_values)


@st.composite
def plans(
    draw: st.DrawFn, key: str, default: bool, meter_keys: list[str], declared: list[Feature]
) -> Plan:
    currency = draw(currencies)
    price = draw(
        st.none()
        | st.builds(Price, st.integers(0, 99_999_999), st.just(currency), st.sampled_from(Interval))
    )
    priced = draw(st.lists(st.sampled_from(meter_keys), unique=True)) if meter_keys else []
    granted = (
        draw(st.lists(st.sampled_from(declared), unique_by=lambda f: f.key)) if declared else []
    )
    features = {f.key: draw(entitlements(f)) for f in granted}
    limited = {f.meter for f in granted if _limited(features[f.key])}
    return Plan(
        key=key,
        default=default,
        name=draw(names),
        price=price,
        metered_prices={m: draw(metered_prices(currency, m not in limited)) for m in priced},
        features=features,
        notify_at=draw(thresholds),
    )


def _limited(entitlement: PlanEntitlement) -> bool:
    """A metered limit: a price on its meter includes nothing (the contradiction rules)."""
    return isinstance(entitlement, MeteredEntitlement) and entitlement.limit is not None


@st.composite
def policies(draw: st.DrawFn, plan_keys: list[str]) -> PaymentPolicies:
    if not plan_keys:
        return PaymentPolicies()
    plan = st.sampled_from(plan_keys)
    fallback = st.none() | st.builds(FallbackPolicy, plan)
    return PaymentPolicies(
        past_due=draw(st.none() | st.builds(PastDuePolicy, st.integers(0, 90), plan)),
        unpaid=draw(fallback),
        canceled=draw(fallback),
        paused=draw(fallback),
    )


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    """Valid catalogs: unique keys, resolvable references, exactly one default plan."""
    meter_keys = draw(st.lists(keys, unique=True, max_size=4))
    feature_keys = draw(st.lists(keys, unique=True, max_size=5))
    plan_keys = draw(st.lists(keys, unique=True, max_size=4))
    declared = [draw(features(k, meter_keys)) for k in feature_keys]
    default = draw(st.integers(0, max(len(plan_keys) - 1, 0)))
    return Catalog(
        meters=tuple(draw(meters(k)) for k in meter_keys),
        features=tuple(declared),
        plans=tuple(
            draw(plans(k, i == default, meter_keys, declared)) for i, k in enumerate(plan_keys)
        ),
        payment_policies=draw(policies(plan_keys)),
    )
