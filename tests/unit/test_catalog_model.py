"""The catalog model and its validation: the example file, every rule, round trips."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meterline.catalog import (
    Aggregation,
    BooleanEntitlement,
    Catalog,
    CatalogError,
    FeatureKind,
    Interval,
    MeteredEntitlement,
    Overage,
    ResetPeriod,
    StaticEntitlement,
    catalog_from_document,
    load_catalog,
    parse_catalog,
)
from meterline.errors import ValidationFailed
from tests.unit.catalog_strategies import catalogs

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"
Doc = dict[str, Any]


@pytest.fixture
def doc() -> Doc:
    """The example catalog as a plain document, to break one rule at a time."""
    data: Doc = yaml.safe_load(EXAMPLE.read_text())
    return data


def problems(data: object) -> dict[str, str]:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(data)
    return {e.field: e.message for e in caught.value.errors}


def test_example_file_loads() -> None:
    catalog = load_catalog(EXAMPLE)
    assert [m.key for m in catalog.meters] == ["api_calls", "tokens"]
    assert catalog.meter("tokens") is not None
    assert catalog.meter("tokens").value_property == "total"  # type: ignore[union-attr]
    assert catalog.default_plan is not None and catalog.default_plan.key == "free"
    assert catalog.plan("free").features["api_calls"] == MeteredEntitlement(  # type: ignore[union-attr]
        50, ResetPeriod.WEEK, Overage.BLOCK
    )
    power = catalog.plan("power")
    assert power is not None and power.price is not None
    assert (power.price.amount, power.price.currency, power.price.interval) == (
        4900,
        "usd",
        Interval.MONTH,
    )
    assert power.metered_prices["api_calls"].unit_amount_decimal == Decimal("0.05")
    assert power.features["api_calls"] == MeteredEntitlement(
        100_000, ResetPeriod.BILLING_PERIOD, Overage.ALLOW
    )
    assert power.features["export"] == BooleanEntitlement(True)
    assert catalog.payment_policies.past_due is not None
    assert catalog.payment_policies.past_due.grace_days == 7


def test_design_md_example_parses() -> None:
    text = """
meters:
  - {key: api_calls, aggregation: sum}
  - {key: tokens, aggregation: sum, value_property: total}
features:
  - {key: api_calls, kind: metered, meter: api_calls}
  - {key: export, kind: boolean}
plans:
  - key: free
    default: true
    features:
      api_calls: {limit: 50, reset: week, overage: block}
payment_policies:
  past_due: {grace_days: 7, then: free}
"""
    catalog = load_catalog(text)
    assert catalog.feature("api_calls") is not None
    assert catalog.feature("export").kind is FeatureKind.BOOLEAN  # type: ignore[union-attr]


def test_defaults_are_filled() -> None:
    catalog = parse_catalog(
        {
            "meters": [{"key": "m", "aggregation": "count"}],
            "features": [{"key": "f", "kind": "metered", "meter": "m"}],
            "plans": [{"key": "p", "default": True, "features": {"f": {}}}],
        }
    )
    assert catalog.meters[0].value_property == "value"
    assert catalog.meters[0].aggregation is Aggregation.COUNT
    entitlement = catalog.plans[0].features["f"]
    assert entitlement == MeteredEntitlement(None, ResetPeriod.BILLING_PERIOD, Overage.BLOCK)
    assert isinstance(entitlement, MeteredEntitlement) and entitlement.unlimited


def test_empty_document_is_an_empty_catalog() -> None:
    assert parse_catalog({}) == Catalog()
    assert load_catalog("{}") == Catalog()


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(0, 0), (1000, 1000), (2.5, Decimal("2.5")), ("0.125", Decimal("0.125")), (3.0, 3)],
)
def test_limits_accept_integers_and_decimals(doc: Doc, limit: object, expected: object) -> None:
    doc["plans"][1]["features"]["api_calls"]["limit"] = limit
    entitlement = parse_catalog(doc).plans[1].features["api_calls"]
    assert isinstance(entitlement, MeteredEntitlement)
    assert entitlement.limit == expected and type(entitlement.limit) is type(expected)


def test_static_features(doc: Doc) -> None:
    doc["features"].append({"key": "support", "kind": "static", "value": "community"})
    doc["plans"][2]["features"]["support"] = "priority"
    catalog = parse_catalog(doc)
    assert catalog.feature("support").value == "community"  # type: ignore[union-attr]
    assert catalog.plans[2].features["support"] == StaticEntitlement("priority")


Mutation = Callable[[Doc], None]


def _set(path: str, value: object) -> Mutation:
    """A mutation setting `value` at a dotted path such as `plans.1.features.api_calls.limit`."""

    def mutate(doc: Doc) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = doc
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(doc: Doc) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = doc
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


def _append(section: str, item: object) -> Mutation:
    return lambda doc: doc[section].append(item)


RULES: list[tuple[str, Mutation, str, str]] = [
    ("top level unknown key", _set("prices", []), "prices", "unknown key"),
    ("section not a list", _set("meters", {"a": 1}), "meters", "must be a list"),
    ("entry not a mapping", _set("meters.0", "api_calls"), "meters[0]", "must be a mapping"),
    ("meter unknown key", _set("meters.0.unit", "x"), "meters[0].unit", "unknown key"),
    ("meter key missing", _delete("meters.0.key"), "meters[0].key", "required"),
    ("meter key pattern", _set("meters.1.key", "Tokens"), "meters[1].key", "must be a key"),
    ("meter key too long", _set("meters.1.key", "t" * 65), "meters[1].key", "must be a key"),
    ("meter key digit first", _set("meters.1.key", "1x"), "meters[1].key", "must be a key"),
    (
        "aggregation",
        _set("meters.0.aggregation", "avg"),
        "meters[0].aggregation",
        "must be one of sum, count, max, latest",
    ),
    ("aggregation missing", _delete("meters.0.aggregation"), "meters[0].aggregation", "required"),
    (
        "value_property",
        _set("meters.1.value_property", "a b"),
        "meters[1].value_property",
        "must be a property name",
    ),
    ("meter name blank", _set("meters.0.name", "  "), "meters[0].name", "non-blank"),
    (
        "duplicate meter",
        _append("meters", {"key": "tokens", "aggregation": "max"}),
        "meters[2].key",
        "duplicate key tokens; meters[1] has it",
    ),
    (
        "feature kind",
        _set("features.2.kind", "flag"),
        "features[2].kind",
        "must be one of boolean, metered, static",
    ),
    ("metered needs meter", _delete("features.0.meter"), "features[0].meter", "required for"),
    (
        "feature to unknown meter",
        _set("features.0.meter", "calls"),
        "features[0].meter",
        "unknown meter calls; declared: api_calls, tokens",
    ),
    (
        "boolean names a meter",
        _set("features.2.meter", "api_calls"),
        "features[2].meter",
        "only metered features name a meter",
    ),
    (
        "value on boolean",
        _set("features.2.value", True),
        "features[2].value",
        "only static features carry a value",
    ),
    (
        "static value type",
        _append("features", {"key": "seats", "kind": "static", "value": [1]}),
        "features[3].value",
        "must be a string",
    ),
    (
        "duplicate feature",
        _append("features", {"key": "export", "kind": "boolean"}),
        "features[3].key",
        "duplicate key export",
    ),
    ("plan unknown key", _set("plans.0.limits", {}), "plans[0].limits", "unknown key"),
    ("plan default type", _set("plans.1.default", "no"), "plans[1].default", "true or false"),
    (
        "two defaults",
        _set("plans.2.default", True),
        "plans[2].default",
        "only one plan can be the default; plans[0] is already",
    ),
    ("no default", _set("plans.0.default", False), "plans", "exactly one plan must have default"),
    (
        "duplicate plan",
        _set("plans.2.key", "basic"),
        "plans[2].key",
        "duplicate key basic; plans[1] has it",
    ),
    ("price amount float", _set("plans.1.price.amount", 9.0), "plans[1].price.amount", "integer"),
    ("price amount bool", _set("plans.1.price.amount", True), "plans[1].price.amount", "integer"),
    (
        "price amount too big",
        _set("plans.1.price.amount", 10**8),
        "plans[1].price.amount",
        "between 0 and 99999999",
    ),
    (
        "price negative",
        _set("plans.1.price.amount", -1),
        "plans[1].price.amount",
        "between 0 and 99999999",
    ),
    ("price currency", _set("plans.1.price.currency", "dollars"), "plans[1].price.currency", "ISO"),
    (
        "price interval",
        _set("plans.1.price.interval", "quarter"),
        "plans[1].price.interval",
        "must be one of day, week, month, year",
    ),
    (
        "price interval missing",
        _delete("plans.1.price.interval"),
        "plans[1].price.interval",
        "required",
    ),
    ("price unknown key", _set("plans.1.price.trial", 7), "plans[1].price.trial", "unknown key"),
    (
        "metered price to unknown meter",
        _set("plans.2.metered_prices.calls", {"unit_amount_decimal": "1", "currency": "usd"}),
        "plans[2].metered_prices.calls",
        "unknown meter calls",
    ),
    (
        "unit amount not a string",
        _set("plans.2.metered_prices.api_calls.unit_amount_decimal", 0.05),
        "plans[2].metered_prices.api_calls.unit_amount_decimal",
        "decimal string",
    ),
    (
        "unit amount not a decimal",
        _set("plans.2.metered_prices.api_calls.unit_amount_decimal", "five cents"),
        "plans[2].metered_prices.api_calls.unit_amount_decimal",
        "must be a decimal >= 0",
    ),
    (
        "unit amount negative",
        _set("plans.2.metered_prices.api_calls.unit_amount_decimal", "-0.05"),
        "plans[2].metered_prices.api_calls.unit_amount_decimal",
        "must be a decimal >= 0",
    ),
    (
        "unit amount NaN",
        _set("plans.2.metered_prices.api_calls.unit_amount_decimal", "NaN"),
        "plans[2].metered_prices.api_calls.unit_amount_decimal",
        "must be a decimal >= 0",
    ),
    (
        "unit amount precision",
        _set("plans.2.metered_prices.api_calls.unit_amount_decimal", "0.0000000000001"),
        "plans[2].metered_prices.api_calls.unit_amount_decimal",
        "at most 12 decimal places",
    ),
    (
        "mixed currencies",
        _set("plans.2.metered_prices.api_calls.currency", "eur"),
        "plans[2].metered_prices.api_calls.currency",
        "must be usd",
    ),
    (
        "plan feature undeclared",
        _set("plans.0.features.exports", True),
        "plans[0].features.exports",
        "unknown feature exports; declared: api_calls, tokens, export",
    ),
    (
        "reset",
        _set("plans.1.features.api_calls.reset", "year"),
        "plans[1].features.api_calls.reset",
        "must be one of day, week, month, billing_period",
    ),
    (
        "overage",
        _set("plans.1.features.api_calls.overage", "bill"),
        "plans[1].features.api_calls.overage",
        "must be one of block, allow",
    ),
    (
        "negative limit",
        _set("plans.1.features.api_calls.limit", -1),
        "plans[1].features.api_calls.limit",
        "must be a number >= 0",
    ),
    (
        "limit bool",
        _set("plans.1.features.api_calls.limit", True),
        "plans[1].features.api_calls.limit",
        "must be a number >= 0",
    ),
    (
        "limit infinite",
        _set("plans.1.features.api_calls.limit", float("inf")),
        "plans[1].features.api_calls.limit",
        "must be a number >= 0",
    ),
    (
        "metered entitlement unknown key",
        _set("plans.1.features.api_calls.soft_limit", 10),
        "plans[1].features.api_calls.soft_limit",
        "unknown key",
    ),
    (
        "metered entitlement shape",
        _set("plans.1.features.api_calls", 1000),
        "plans[1].features.api_calls",
        "must be a mapping {limit, reset, overage}",
    ),
    (
        "boolean entitlement shape",
        _set("plans.2.features.export", "yes"),
        "plans[2].features.export",
        "must be true or false",
    ),
    (
        "policy unknown state",
        _set("payment_policies.trialing", {"plan": "free"}),
        "payment_policies.trialing",
        "unknown key",
    ),
    (
        "policy unknown plan",
        _set("payment_policies.unpaid.plan", "gold"),
        "payment_policies.unpaid.plan",
        "unknown plan gold; declared: free, basic, power",
    ),
    (
        "past_due unknown plan",
        _set("payment_policies.past_due.then", "gold"),
        "payment_policies.past_due.then",
        "unknown plan gold",
    ),
    (
        "grace days",
        _set("payment_policies.past_due.grace_days", -1),
        "payment_policies.past_due.grace_days",
        "integer >= 0",
    ),
    (
        "grace days missing",
        _delete("payment_policies.past_due.grace_days"),
        "payment_policies.past_due.grace_days",
        "required",
    ),
    (
        "policy unknown key",
        _set("payment_policies.canceled.after_days", 3),
        "payment_policies.canceled.after_days",
        "unknown key",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "message"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_each_rule_is_rejected_with_its_path(
    doc: Doc, mutate: Mutation, path: str, message: str
) -> None:
    mutate(doc)
    found = problems(doc)
    assert path in found, found
    assert message in found[path]


def test_example_document_is_valid(doc: Doc) -> None:
    parse_catalog(doc)


def test_every_problem_is_reported_at_once(doc: Doc) -> None:
    _set("prices", [])(doc)
    _set("meters.0.unit", "x")(doc)
    _set("meters.1.aggregation", "avg")(doc)
    _delete("features.0.meter")(doc)
    _set("plans.1.features.api_calls.reset", "year")(doc)
    _set("plans.2.price.currency", "$")(doc)
    _set("payment_policies.unpaid.plan", "gold")(doc)
    found = problems(doc)
    assert {
        "prices",
        "meters[0].unit",
        "meters[1].aggregation",
        "features[0].meter",
        "plans[1].features.api_calls.reset",
        "plans[2].price.currency",
        "payment_policies.unpaid.plan",
    } <= found.keys()


def test_problems_come_in_document_order(doc: Doc) -> None:
    _set("payment_policies.unpaid.plan", "gold")(doc)
    _set("plans.1.features.api_calls.reset", "year")(doc)
    _append("meters", {"key": "tokens", "aggregation": "max"})(doc)
    _set("meters.0.aggregation", "avg")(doc)
    with pytest.raises(CatalogError) as caught:
        parse_catalog(doc)
    assert caught.value.paths == [
        "meters[0].aggregation",
        "meters[2].key",
        "plans[1].features.api_calls.reset",
        "payment_policies.unpaid.plan",
    ]


def test_a_bad_entry_does_not_cascade_into_reference_errors(doc: Doc) -> None:
    _set("meters.0.aggregation", "avg")(doc)
    _set("features.0.kind", "metric")(doc)
    assert set(problems(doc)) == {"meters[0].aggregation", "features[0].kind"}


def test_error_is_a_422_listing_every_problem(doc: Doc) -> None:
    _set("plans.1.features.api_calls.reset", "year")(doc)
    with pytest.raises(CatalogError) as caught:
        parse_catalog(doc)
    error = caught.value
    assert isinstance(error, ValidationFailed) and error.status == 422
    assert error.body()["errors"] == [
        {
            "field": "plans[1].features.api_calls.reset",
            "message": "must be one of day, week, month, billing_period",
        }
    ]
    assert "plans[1].features.api_calls.reset: must be one of" in str(error)


def test_odd_mapping_keys_are_quoted_in_paths(doc: Doc) -> None:
    _set("plans.0.features.api calls", True)(doc)
    assert 'plans[0].features["api calls"]' in problems(doc)


@pytest.mark.parametrize("data", [None, [], 3, "catalog.yaml"])
def test_the_document_must_be_a_mapping(data: object) -> None:
    assert list(problems(data)) == ["<catalog>"]


def test_a_string_path_gets_a_hint() -> None:
    with pytest.raises(CatalogError, match=r"pass a pathlib\.Path"):
        load_catalog("deploy/catalog.example.yaml")


def test_duplicate_yaml_keys_are_errors() -> None:
    text = "meters:\n  - key: a\n    aggregation: sum\n    aggregation: max\n"
    with pytest.raises(CatalogError) as caught:
        load_catalog(text)
    assert caught.value.paths == ["<yaml>"]
    assert "duplicate key 'aggregation'" in caught.value.errors[0].message
    assert "line 4" in caught.value.errors[0].message


def test_yaml_merge_keys_still_work() -> None:
    text = """
x-price: &usd {currency: usd, interval: month}
"""
    with pytest.raises(CatalogError, match="x-price"):
        load_catalog(text)
    plans = """
plans:
  - key: free
    default: true
    price: {<<: {amount: 0, currency: usd, interval: month}, amount: 100}
"""
    price = load_catalog(plans).plans[0].price
    assert price is not None and price.amount == 100


def test_invalid_yaml_reports_its_line() -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog("meters: [\n  {key: a\n")
    assert caught.value.paths == ["<yaml>"]
    assert "line" in caught.value.errors[0].message


def test_unsafe_yaml_tags_are_refused() -> None:
    with pytest.raises(CatalogError):
        load_catalog("meters: !!python/object/apply:os.system ['true']")


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(CatalogError, match="cannot read the file") as caught:
        load_catalog(missing)
    assert caught.value.paths == [str(missing)]


def test_load_from_path_and_text_agree() -> None:
    assert load_catalog(EXAMPLE) == load_catalog(EXAMPLE.read_text())


def test_currency_is_stored_lower_case(doc: Doc) -> None:
    _set("plans.1.price.currency", "USD")(doc)
    price = parse_catalog(doc).plans[1].price
    assert price is not None and price.currency == "usd"


def test_document_round_trip_of_the_example() -> None:
    catalog = load_catalog(EXAMPLE)
    document = catalog.to_document()
    assert json.loads(json.dumps(document)) == document
    assert catalog_from_document(document) == catalog
    assert catalog_from_document(document).to_document() == document


def test_decimal_limits_stay_exact_through_documents(doc: Doc) -> None:
    _set("plans.1.features.api_calls.limit", "0.10")(doc)
    catalog = parse_catalog(doc)
    document = catalog.to_document()
    assert document["plans"][1]["features"]["api_calls"]["limit"] == "0.10"
    assert catalog_from_document(document).to_document() == document


def test_model_objects_are_frozen() -> None:
    catalog = load_catalog(EXAMPLE)
    with pytest.raises(AttributeError):
        catalog.meters = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        catalog.plans[0].features["export"] = BooleanEntitlement(True)  # type: ignore[index]


@settings(max_examples=150, deadline=None)
@given(catalogs())
def test_generated_catalogs_round_trip_through_documents(catalog: Catalog) -> None:
    document = catalog.to_document()
    assert json.loads(json.dumps(document)) == document
    again = catalog_from_document(copy.deepcopy(document))
    assert again == catalog
    assert again.to_document() == document


@settings(max_examples=75, deadline=None)
@given(catalogs())
def test_generated_catalogs_round_trip_through_yaml(catalog: Catalog) -> None:
    text = yaml.safe_dump(catalog.to_document(), allow_unicode=True, sort_keys=False)
    assert load_catalog(text) == catalog


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["key", "kind", "meter", "plans", "features", "limit", "x"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "meters": _json,
            "features": _json,
            "plans": _json,
            "payment_policies": _json,
        },
    )
)
def test_arbitrary_input_gives_a_catalog_or_a_catalog_error(data: Doc) -> None:
    try:
        parse_catalog(data)
    except CatalogError as error:
        assert error.errors and all(e.field and e.message for e in error.errors)
