"""Catalog validation at the boundary: YAML text, a file or a plain document in; a `Catalog` out.

Every rule is checked in one pass, and a catalog that breaks any raises one `CatalogError` listing
each problem with its path (`plans[1].features.api_calls.reset: must be one of ...`). Unknown keys
are errors, and so are duplicate keys in a YAML mapping (PyYAML would silently keep the last)
and YAML nested deeper than 32 levels (refused while composing, before recursion runs deep).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path as FilePath
from typing import Any, TypeVar

import yaml

from meterline.catalog import _packs as packs
from meterline.catalog import _pricing as pricing
from meterline.catalog import _reading as rd
from meterline.catalog._reading import Context, Entry, Invalid, Path
from meterline.catalog.errors import CatalogError
from meterline.catalog.model import (
    KEY_PATTERN,
    Aggregation,
    BooleanEntitlement,
    Catalog,
    FallbackPolicy,
    Feature,
    FeatureKind,
    Interval,
    Limit,
    Meter,
    MeteredEntitlement,
    MeteredPrice,
    Overage,
    PastDuePolicy,
    PaymentPolicies,
    Plan,
    PlanEntitlement,
    Price,
    ResetPeriod,
    StaticEntitlement,
)
from meterline.errors import FieldError

SECTIONS = ("meters", "features", "plans", "payment_policies", "credit_packs", "plan_changes")
MAX_NESTING = 32
T = TypeVar("T")


def load_catalog(source: str | os.PathLike[str]) -> Catalog:
    """Parse YAML (or JSON) text given as a `str`, or the file at a path given as a `PathLike`.

    Raises `CatalogError` for unreadable files, invalid YAML and every broken rule.
    """
    text = _read_file(source) if isinstance(source, os.PathLike) else source
    return parse_catalog(_load_yaml(text))


def parse_catalog(data: object) -> Catalog:
    """Validate a plain document (as `yaml.safe_load` or `json.loads` give) into a `Catalog`."""
    ctx = Context()
    catalog = _catalog(ctx, data)
    if ctx.problems:
        raise CatalogError(ctx.sorted_problems(SECTIONS))
    return catalog


def catalog_from_document(document: Mapping[str, Any]) -> Catalog:
    """The inverse of `Catalog.to_document()`, with the same validation as a file."""
    return parse_catalog(dict(document))


def _read_file(path: os.PathLike[str]) -> str:
    try:
        return FilePath(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = FieldError(os.fspath(path), f"cannot read the file: {reason}")
        raise CatalogError([problem]) from exc


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key repeated within one mapping, and collections nested
    deeper than `MAX_NESTING` before PyYAML's recursive composer can exhaust the stack."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self._depth >= MAX_NESTING:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            problem = f"collections nested deeper than {MAX_NESTING} levels"
            raise yaml.composer.ComposerError(None, None, problem, mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if isinstance(key, str | int | float | bool) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str) -> object:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise CatalogError([FieldError("<yaml>", _yaml_message(exc))]) from exc


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return f"invalid YAML: {exc}"


def _catalog(ctx: Context, data: object) -> Catalog:
    if data is None or isinstance(data, str):
        hint = "the file is empty" if data is None else "to load a file, pass a pathlib.Path"
        ctx.fail((), f"must be a mapping of {rd.one_of(SECTIONS)} ({hint})")
        return Catalog()
    top = Entry(ctx, data, (), optional=SECTIONS)
    raw_meters, raw_features, raw_plans = (_section(top, s) for s in SECTIONS[:3])
    ctx.meters = tuple(_declared(ctx, "meters", raw_meters))
    ctx.features = _feature_kinds(raw_features, _declared(ctx, "features", raw_features))
    ctx.feature_meters = _feature_meters(raw_features, ctx.features)
    ctx.plans = tuple(_declared(ctx, "plans", raw_plans))
    _check_default_plan(ctx, raw_plans)
    raw_packs = _section(top, "credit_packs")
    _declared(ctx, "credit_packs", raw_packs)
    return Catalog(
        meters=_each(ctx, "meters", raw_meters, _meter),
        features=_each(ctx, "features", raw_features, _feature),
        plans=_each(ctx, "plans", raw_plans, _plan),
        payment_policies=_policies(ctx, top.fields.get("payment_policies")),
        credit_packs=_each(ctx, "credit_packs", raw_packs, packs.credit_pack),
        plan_changes=packs.plan_changes(ctx, top.fields.get("plan_changes")),
    )


def _section(top: Entry, name: str) -> list[object]:
    raw = top.fields.get(name)
    if raw is None:
        return []
    if not isinstance(raw, list):
        top.fail(name, f"must be a list, not {rd.type_name(raw)}")
        return []
    return raw


def _declared(ctx: Context, section: str, raws: list[object]) -> dict[str, int]:
    """The valid keys a section declares, each with its first index; repeats are problems."""
    first: dict[str, int] = {}
    for index, raw in enumerate(raws):
        key = raw.get("key") if isinstance(raw, dict) else None
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            continue
        if key in first:
            message = f"duplicate key {key}; {section}[{first[key]}] has it"
            ctx.fail((section, index, "key"), message)
        else:
            first[key] = index
    return first


def _feature_kinds(raws: list[object], first: dict[str, int]) -> dict[str, FeatureKind | None]:
    """Each declared feature's kind, `None` where the kind itself is invalid."""
    kinds: dict[str, FeatureKind | None] = {}
    for key, index in first.items():
        raw = raws[index]
        kind = raw.get("kind") if isinstance(raw, dict) else None
        valid = isinstance(kind, str) and kind in FeatureKind._value2member_map_
        kinds[key] = FeatureKind(kind) if valid and isinstance(kind, str) else None
    return kinds


def _feature_meters(raws: list[object], kinds: Mapping[str, FeatureKind | None]) -> dict[str, str]:
    """The meter each declared metered feature counts (as written; checked elsewhere)."""
    meters: dict[str, str] = {}
    for raw in raws:
        if isinstance(raw, dict) and kinds.get(str(raw.get("key"))) is FeatureKind.METERED:
            meter = raw.get("meter")
            if isinstance(meter, str):
                meters.setdefault(str(raw["key"]), meter)
    return meters


def _each(
    ctx: Context,
    section: str,
    raws: list[object],
    read: Callable[[Context, object, Path], T | None],
) -> tuple[T, ...]:
    items = (read(ctx, raw, (section, index)) for index, raw in enumerate(raws))
    return tuple(item for item in items if item is not None)


def _unknown(kind: str, key: object, declared: Iterable[str]) -> str:
    names = list(declared)
    known = f"declared: {rd.one_of(names)}" if names else f"no {kind}s are declared"
    return f"unknown {kind} {key}; {known}"


def _reference(kind: str, declared: Iterable[str]) -> Callable[[object], str]:
    names = tuple(declared)

    def convert(value: object) -> str:
        key = rd.key(value)
        if key not in names:
            raise Invalid(_unknown(kind, key, names))
        return key

    return convert


def _meter(ctx: Context, raw: object, path: Path) -> Meter | None:
    entry = Entry(ctx, raw, path, ("key", "aggregation"), ("value_property", "name"))
    meter = Meter(
        key=entry.get("key", rd.key, ""),
        aggregation=entry.get("aggregation", rd.choice(Aggregation), Aggregation.SUM),
        value_property=entry.get("value_property", rd.value_property, "value"),
        name=entry.get("name", rd.name, None),
    )
    return None if entry.failed else meter


def _feature(ctx: Context, raw: object, path: Path) -> Feature | None:
    entry = Entry(ctx, raw, path, ("key", "kind"), ("meter", "value", "name"))
    kind = entry.get("kind", rd.choice(FeatureKind), None)
    feature = Feature(
        key=entry.get("key", rd.key, ""),
        kind=kind or FeatureKind.BOOLEAN,
        meter=entry.get("meter", _meter_reference(ctx, kind), None),
        value=entry.get("value", rd.static_value, None),
        name=entry.get("name", rd.name, None),
    )
    if kind is not None:
        _check_feature_kind(entry, kind)
    return None if entry.failed else feature


def _meter_reference(ctx: Context, kind: FeatureKind | None) -> Callable[[object], str]:
    """Checks the meter exists, unless the feature's kind already forbids naming one."""
    return _reference("meter", ctx.meters) if kind in (FeatureKind.METERED, None) else rd.key


def _check_feature_kind(entry: Entry, kind: FeatureKind) -> None:
    if kind is FeatureKind.METERED and not entry.has("meter"):
        entry.fail("meter", "required for metered features")
    if kind is not FeatureKind.METERED and entry.has("meter"):
        entry.fail("meter", "only metered features name a meter")
    if kind is not FeatureKind.STATIC and entry.has("value"):
        entry.fail("value", "only static features carry a value")


def _plan(ctx: Context, raw: object, path: Path) -> Plan | None:
    optional = ("default", "name", "price", "metered_prices", "features", "notify_at")
    entry = Entry(ctx, raw, path, ("key",), optional)
    fields = entry.fields
    price = _price(ctx, fields["price"], (*path, "price")) if "price" in fields else None
    metered = _metered_prices(ctx, fields.get("metered_prices"), (*path, "metered_prices"))
    _check_currencies(ctx, path, price, metered)
    features = _plan_features(ctx, fields.get("features"), (*path, "features"))
    pricing.check_included(ctx, path, metered, features)
    plan = Plan(
        key=entry.get("key", rd.key, ""),
        default=entry.get("default", rd.boolean, False),
        name=entry.get("name", rd.name, None),
        price=price,
        metered_prices=metered,
        features=features,
        notify_at=_notify_at(entry) or (),
    )
    return None if entry.failed else plan


def _price(ctx: Context, raw: object, path: Path) -> Price | None:
    entry = Entry(ctx, raw, path, ("amount", "currency", "interval"))
    price = Price(
        amount=entry.get("amount", rd.integer(0, rd.MAX_PRICE_AMOUNT), 0),
        currency=entry.get("currency", rd.currency, ""),
        interval=entry.get("interval", rd.choice(Interval), Interval.MONTH),
    )
    return None if entry.failed else price


def _keyed_mapping(ctx: Context, raw: object, path: Path, what: str) -> dict[str, object]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        ctx.fail(path, f"must be a mapping of {what}, not {rd.type_name(raw)}")
        return {}
    return {str(key): value for key, value in raw.items()}


def _metered_prices(ctx: Context, raw: object, path: Path) -> dict[str, MeteredPrice]:
    prices: dict[str, MeteredPrice] = {}
    for key, value in _keyed_mapping(ctx, raw, path, "meter keys to prices").items():
        if key not in ctx.meters:
            ctx.fail((*path, key), _unknown("meter", key, ctx.meters))
            continue
        price = pricing.metered_price(ctx, value, (*path, key))
        if price is not None:
            prices[key] = price
    return prices


def _check_currencies(
    ctx: Context, path: Path, price: Price | None, metered: Mapping[str, MeteredPrice]
) -> None:
    currencies = [price.currency] if price else []
    currencies += [p.currency for p in metered.values()]
    for key, metered_price in metered.items():
        if metered_price.currency != currencies[0]:
            message = f"must be {currencies[0]}, like the plan's other prices (one currency a plan)"
            ctx.fail((*path, "metered_prices", key, "currency"), message)


def _plan_features(ctx: Context, raw: object, path: Path) -> dict[str, PlanEntitlement]:
    entitlements: dict[str, PlanEntitlement] = {}
    for key, value in _keyed_mapping(ctx, raw, path, "feature keys to entitlements").items():
        if key not in ctx.features:
            ctx.fail((*path, key), _unknown("feature", key, ctx.features))
            continue
        kind = ctx.features[key]
        entitlement = _entitlement(ctx, kind, value, (*path, key)) if kind else None
        if entitlement is not None:
            entitlements[key] = entitlement
    return entitlements


def _entitlement(
    ctx: Context, kind: FeatureKind, raw: object, path: Path
) -> PlanEntitlement | None:
    if kind is FeatureKind.METERED:
        return _metered_entitlement(ctx, raw, path)
    try:
        if kind is FeatureKind.BOOLEAN:
            return BooleanEntitlement(rd.boolean(raw))
        return StaticEntitlement(rd.static_value(raw))
    except Invalid as problem:
        ctx.fail(path, f"{problem} ({path[-1]} is a {kind.value} feature)")
        return None


def _metered_entitlement(ctx: Context, raw: object, path: Path) -> MeteredEntitlement | None:
    if not isinstance(raw, dict):
        shape = "{limit, reset, overage}"
        ctx.fail(path, f"must be a mapping {shape} ({path[-1]} is a metered feature)")
        return None
    entry = Entry(ctx, raw, path, optional=("limit", "reset", "overage", "notify_at"))
    entitlement = MeteredEntitlement(
        limit=entry.get("limit", rd.limit, None),
        reset=entry.get("reset", rd.choice(ResetPeriod), ResetPeriod.BILLING_PERIOD),
        overage=entry.get("overage", rd.choice(Overage), Overage.BLOCK),
        notify_at=_notify_at(entry),
    )
    return None if entry.failed else entitlement


def _notify_at(entry: Entry) -> tuple[Limit, ...] | None:
    """An entry's `notify_at` (None when absent); each bad percentage fails at its index."""
    if not entry.has("notify_at"):
        return None
    raw, path = entry.fields["notify_at"], (*entry.path, "notify_at")
    if not isinstance(raw, list) or len(raw) > rd.MAX_THRESHOLDS:
        shape = f"a list of at most {rd.MAX_THRESHOLDS} percentages of the limit"
        entry.ctx.fail(path, f"must be {shape} like [50, 80, 100], not {rd.type_name(raw)}")
        return None
    percents: list[Limit] = []
    for index, value in enumerate(raw):
        try:
            percents.append(rd.threshold(value, percents[-1] if percents else None))
        except Invalid as problem:
            entry.ctx.fail((*path, index), str(problem))
    return tuple(percents)


def _is_default(raw: object) -> bool:
    return isinstance(raw, dict) and raw.get("default") is True


def _check_default_plan(ctx: Context, raws: list[object]) -> None:
    defaults = [i for i, raw in enumerate(raws) if _is_default(raw)]
    if raws and not defaults:
        ctx.fail(("plans",), "exactly one plan must have default: true (the unsubscribed plan)")
    for index in defaults[1:]:
        message = f"only one plan can be the default; plans[{defaults[0]}] is already"
        ctx.fail(("plans", index, "default"), message)


def _policies(ctx: Context, raw: object) -> PaymentPolicies:
    if raw is None:
        return PaymentPolicies()
    path: Path = ("payment_policies",)
    entry = Entry(ctx, raw, path, optional=("past_due", "unpaid", "canceled", "paused"))
    return PaymentPolicies(
        past_due=_past_due(ctx, entry.fields["past_due"]) if entry.has("past_due") else None,
        unpaid=_fallback(ctx, entry, "unpaid"),
        canceled=_fallback(ctx, entry, "canceled"),
        paused=_fallback(ctx, entry, "paused"),
    )


def _past_due(ctx: Context, raw: object) -> PastDuePolicy | None:
    entry = Entry(ctx, raw, ("payment_policies", "past_due"), ("grace_days", "then"))
    policy = PastDuePolicy(
        grace_days=entry.get("grace_days", rd.integer(0), 0),
        then=entry.get("then", _reference("plan", ctx.plans), ""),
    )
    return None if entry.failed else policy


def _fallback(ctx: Context, parent: Entry, state: str) -> FallbackPolicy | None:
    if not parent.has(state):
        return None
    entry = Entry(ctx, parent.fields[state], ("payment_policies", state), ("plan",))
    policy = FallbackPolicy(plan=entry.get("plan", _reference("plan", ctx.plans), ""))
    return None if entry.failed else policy


def metered_price_from_document(document: Mapping[str, Any]) -> MeteredPrice:
    """The inverse of `MeteredPrice.to_document()`, with the same validation as in a file."""
    ctx = Context()
    price = pricing.metered_price(ctx, dict(document), ("metered_price",))
    if ctx.problems or price is None:
        raise CatalogError([problem for _, problem in ctx.problems])
    return price
