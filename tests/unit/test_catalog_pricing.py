"""Metered prices in the catalog: the forms Stripe prices with, included units, contradictions."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from meterline.catalog import (
    CatalogError,
    MeteredPrice,
    Package,
    Rounding,
    Tier,
    TiersMode,
    catalog_from_document,
    diff_catalogs,
    load_catalog,
    parse_catalog,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"
Doc = dict[str, Any]


def catalog_with(price: object, *features: tuple[str, object]) -> Doc:
    """One meter `m`, metered features `f` and `g` on it, plan `p` pricing `m` with `price`."""
    return {
        "meters": [{"key": "m", "aggregation": "sum"}],
        "features": [
            {"key": "f", "kind": "metered", "meter": "m"},
            {"key": "g", "kind": "metered", "meter": "m"},
        ],
        "plans": [
            {
                "key": "p",
                "default": True,
                "metered_prices": {"m": price},
                "features": dict(features),
            }
        ],
    }


def price_of(document: Doc) -> MeteredPrice:
    plan = parse_catalog(document).plan("p")
    assert plan is not None
    return plan.metered_prices["m"]


def problems(document: Doc) -> dict[str, str]:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(document)
    return {e.field: e.message for e in caught.value.errors}


GRADUATED = {
    "tiers_mode": "graduated",
    "tiers": [
        {"up_to": 1000, "unit_amount_decimal": "0.1"},
        {"up_to": "inf", "unit_amount_decimal": "0.05", "flat_amount_decimal": "100"},
    ],
    "currency": "usd",
}
VOLUME = {**GRADUATED, "tiers_mode": "volume"}
PACKAGE = {
    "package": {"divide_by": 60, "round": "up", "amount_decimal": "1000"},
    "currency": "usd",
}


def test_the_example_power_plan_includes_its_100000_calls() -> None:
    catalog = load_catalog(EXAMPLE)
    power = catalog.plan("power")
    assert power is not None
    price = power.metered_prices["api_calls"]
    assert price.included == 100_000 and price.per_unit == Decimal("0.05")
    assert price.stripe_tiers_mode is TiersMode.GRADUATED
    assert price.stripe_tiers() == (
        Tier(100_000, Decimal(0)),
        Tier(None, Decimal("0.05")),
    )
    assert price.unit_amount_decimal == Decimal("0.05")


def test_each_form_is_read_exactly() -> None:
    assert price_of(catalog_with(GRADUATED)) == MeteredPrice(
        "usd",
        tiers=(Tier(1000, Decimal("0.1")), Tier(None, Decimal("0.05"), Decimal(100))),
        tiers_mode=TiersMode.GRADUATED,
    )
    volume = price_of(catalog_with(VOLUME))
    assert volume.tiers_mode is TiersMode.VOLUME and volume.stripe_tiers() == volume.tiers
    package = price_of(catalog_with(PACKAGE))
    assert package.package == Package(60, Rounding.UP, Decimal(1000))
    assert package.stripe_tiers_mode is None and package.stripe_tiers() == ()
    assert package.unit_amount_decimal == Decimal(1000) / 60


def test_included_units_are_a_free_first_graduated_tier() -> None:
    per_unit = price_of(
        catalog_with({"unit_amount_decimal": "2", "included": 10, "currency": "usd"})
    )
    assert per_unit.stripe_tiers() == (Tier(10, Decimal(0)), Tier(None, Decimal(2)))
    graduated = price_of(catalog_with({**GRADUATED, "included": 500}))
    assert graduated.stripe_tiers() == (Tier(500, Decimal(0)), *graduated.tiers)
    assert graduated.stripe_tiers_mode is TiersMode.GRADUATED


@pytest.mark.parametrize(
    "price", [GRADUATED, VOLUME, PACKAGE], ids=["graduated", "volume", "package"]
)
def test_each_form_round_trips_through_documents_and_yaml(price: Doc) -> None:
    catalog = parse_catalog(catalog_with(price))
    document = catalog.to_document()
    assert json.loads(json.dumps(document)) == document
    assert catalog_from_document(document) == catalog
    assert load_catalog(yaml.safe_dump(document)) == catalog


OLD_POWER_DOCUMENT: Doc = {
    "meters": [{"key": "api_calls", "aggregation": "sum", "value_property": "value"}],
    "features": [{"key": "api_calls", "kind": "metered", "meter": "api_calls"}],
    "plans": [
        {"key": "free", "default": True, "features": {}},
        {
            "key": "power",
            "default": False,
            "price": {"amount": 4900, "currency": "usd", "interval": "month"},
            "metered_prices": {"api_calls": {"unit_amount_decimal": "0.05", "currency": "usd"}},
            "features": {
                "api_calls": {"limit": 100000, "reset": "billing_period", "overage": "allow"}
            },
        },
    ],
    "payment_policies": {},
}


def test_documents_stored_before_tiers_existed_still_load_unchanged() -> None:
    catalog = catalog_from_document(OLD_POWER_DOCUMENT)
    power = catalog.plan("power")
    assert power is not None
    price = power.metered_prices["api_calls"]
    assert price == MeteredPrice("usd", per_unit=Decimal("0.05"))
    assert price.stripe_tiers_mode is None
    assert catalog.to_document() == OLD_POWER_DOCUMENT


def test_the_diff_names_a_changed_tier() -> None:
    old = parse_catalog(catalog_with(GRADUATED))
    changed = json.loads(json.dumps(GRADUATED))
    changed["tiers"][0]["unit_amount_decimal"] = "0.2"
    lines = diff_catalogs(old, parse_catalog(catalog_with(changed))).lines()
    assert len(lines) == 1 and lines[0].startswith("~ plan p: metered_prices.m.tiers ")
    assert "0.2" in lines[0]


def _tiers(*tiers: Doc) -> Doc:
    return {"tiers_mode": "graduated", "tiers": list(tiers), "currency": "usd"}


P = "plans[0].metered_prices.m"
BLOCK_50 = ("f", {"limit": 50, "reset": "billing_period", "overage": "block"})
ALLOW_100 = ("f", {"limit": 100, "reset": "billing_period", "overage": "allow"})
PER_UNIT_100 = {"unit_amount_decimal": "1", "included": 100, "currency": "usd"}

FREE_FIRST_60 = _tiers(
    {"up_to": 60, "unit_amount_decimal": "0"},
    {"up_to": "inf", "unit_amount_decimal": "1"},
)

REFUSED: list[tuple[str, Doc, str, str]] = [
    ("no form", catalog_with({"currency": "usd"}), P, "exactly one of"),
    (
        "two forms",
        catalog_with({**PACKAGE, "unit_amount_decimal": "1"}),
        P,
        "it has unit_amount_decimal, package",
    ),
    (
        "tiers without a mode",
        catalog_with({"tiers": GRADUATED["tiers"], "currency": "usd"}),
        f"{P}.tiers_mode",
        "go together",
    ),
    (
        "unknown mode",
        catalog_with({**GRADUATED, "tiers_mode": "stairs"}),
        f"{P}.tiers_mode",
        "one of",
    ),
    ("empty tiers", catalog_with(_tiers()), f"{P}.tiers", "non-empty list"),
    (
        "last tier bounded",
        catalog_with(_tiers({"up_to": 5, "unit_amount_decimal": "1"})),
        f"{P}.tiers[0].up_to",
        'must be "inf"',
    ),
    (
        "inf before the last",
        catalog_with(
            _tiers(
                {"up_to": "inf", "unit_amount_decimal": "1"},
                {"up_to": "inf", "unit_amount_decimal": "1"},
            )
        ),
        f"{P}.tiers[0].up_to",
        "last tier only",
    ),
    (
        "bounds not increasing",
        catalog_with(
            _tiers(
                {"up_to": 10, "unit_amount_decimal": "1"},
                {"up_to": 10, "unit_amount_decimal": "1"},
                {"up_to": "inf", "unit_amount_decimal": "1"},
            )
        ),
        f"{P}.tiers[1].up_to",
        "above the previous tier's 10",
    ),
    (
        "bound not a positive integer",
        catalog_with(
            _tiers(
                {"up_to": 0, "unit_amount_decimal": "1"},
                {"up_to": "inf", "unit_amount_decimal": "1"},
            )
        ),
        f"{P}.tiers[0].up_to",
        "integer >= 1",
    ),
    (
        "tier without an amount",
        catalog_with(_tiers({"up_to": "inf"})),
        f"{P}.tiers[0]",
        "needs unit_amount_decimal",
    ),
    (
        "flat amount as a float",
        catalog_with(_tiers({"up_to": "inf", "flat_amount_decimal": 1.5})),
        f"{P}.tiers[0].flat_amount_decimal",
        "decimal string",
    ),
    (
        "tier unknown key",
        catalog_with(_tiers({"up_to": "inf", "unit_amount": 1})),
        f"{P}.tiers[0].unit_amount",
        "unknown key",
    ),
    (
        "package divide_by zero",
        catalog_with(
            {"package": {"divide_by": 0, "round": "up", "amount_decimal": "1"}, "currency": "usd"}
        ),
        f"{P}.package.divide_by",
        "integer >= 1",
    ),
    (
        "package round",
        catalog_with(
            {
                "package": {"divide_by": 2, "round": "nearest", "amount_decimal": "1"},
                "currency": "usd",
            }
        ),
        f"{P}.package.round",
        "one of up, down",
    ),
    ("included negative", catalog_with({**PER_UNIT_100, "included": -1}), f"{P}.included", ">= 0"),
    (
        "included decimal",
        catalog_with({**PER_UNIT_100, "included": 1.5}),
        f"{P}.included",
        "integer",
    ),
    (
        "included with a package",
        catalog_with({**PACKAGE, "included": 10}),
        f"{P}.included",
        "package",
    ),
    ("included with volume", catalog_with({**VOLUME, "included": 10}), f"{P}.included", "volume"),
    (
        "included past the first tier",
        catalog_with({**GRADUATED, "included": 1000}),
        f"{P}.included",
        "below the first tier's up_to (1000)",
    ),
    (
        "blocking limit below the included units",
        catalog_with(PER_UNIT_100, BLOCK_50),
        f"{P}.included",
        "features.f blocks at 50",
    ),
    (
        "overage billed before the limit",
        catalog_with({**PER_UNIT_100, "included": 60}, ALLOW_100),
        f"{P}.included",
        "must end at the limit",
    ),
    (
        "overage past the limit left free",
        catalog_with({**PER_UNIT_100, "included": 150}, ALLOW_100),
        f"{P}.included",
        "must end at the limit",
    ),
    (
        "a written-out free first tier ending before the limit",
        catalog_with(FREE_FIRST_60, ALLOW_100),
        f"{P}.tiers[0].up_to",
        "includes 60 units",
    ),
    (
        "free tiers after included units, past a blocking limit",
        catalog_with({**FREE_FIRST_60, "included": 10}, BLOCK_50),
        f"{P}.tiers[0].up_to",
        "includes 60 units but features.f blocks at 50",
    ),
    (
        "a second feature on the meter contradicts",
        catalog_with(PER_UNIT_100, ALLOW_100, ("g", {"limit": 10, "overage": "block"})),
        f"{P}.included",
        "features.g blocks at 10",
    ),
    (
        "limit reset on another period than the included units",
        catalog_with(PER_UNIT_100, ("f", {"limit": 100, "reset": "month", "overage": "allow"})),
        "plans[0].features.f.reset",
        "must be billing_period",
    ),
]


@pytest.mark.parametrize(
    ("document", "path", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_each_bad_price_is_refused_with_its_path(document: Doc, path: str, message: str) -> None:
    found = problems(document)
    assert path in found, found
    assert message in found[path]


ACCEPTED: list[tuple[str, Doc]] = [
    ("overage billed past the limit", catalog_with(PER_UNIT_100, ALLOW_100)),
    (
        "blocking at the included units",
        catalog_with(PER_UNIT_100, ("f", {"limit": 100, "overage": "block"})),
    ),
    (
        "blocking above the included units, billed in between",
        catalog_with(PER_UNIT_100, ("f", {"limit": 500, "overage": "block"})),
    ),
    ("unlimited with included units", catalog_with(PER_UNIT_100, ("f", {"limit": None}))),
    (
        "no included units: billed from the first unit, as before",
        catalog_with({"unit_amount_decimal": "1", "currency": "usd"}, ALLOW_100),
    ),
    (
        "a week limit with a price that includes nothing",
        catalog_with(GRADUATED, ("f", {"limit": 100, "reset": "week", "overage": "block"})),
    ),
    ("a free first tier written out in volume mode", catalog_with(VOLUME, BLOCK_50)),
    (
        "a written-out free first tier ending at the limit",
        catalog_with(
            _tiers(
                {"up_to": 100, "unit_amount_decimal": "0"},
                {"up_to": "inf", "unit_amount_decimal": "1"},
            ),
            ALLOW_100,
        ),
    ),
]


@pytest.mark.parametrize("document", [r[1] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_consistent_plans_are_accepted(document: Doc) -> None:
    parse_catalog(document)
