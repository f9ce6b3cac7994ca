"""Credit packs in the catalog: one-time purchases crediting metered features."""

from __future__ import annotations

from typing import Any

import pytest

from meterline.catalog import CatalogError, catalog_from_document, diff_catalogs, parse_catalog

Doc = dict[str, Any]


def catalog_with(*packs: object) -> Doc:
    return {
        "meters": [{"key": "calls", "aggregation": "sum"}],
        "features": [
            {"key": "api_calls", "kind": "metered", "meter": "calls"},
            {"key": "export", "kind": "boolean"},
        ],
        "plans": [{"key": "free", "default": True}],
        "credit_packs": list(packs),
    }


PACK = {"key": "k10", "price": {"amount": 1500, "currency": "USD"}, "credits": {"api_calls": 10000}}


CURRENCY = "must be a three-letter ISO 4217 currency code such as usd"
NON_EMPTY = "must be a non-empty mapping of metered feature keys to credit amounts"


def problems(doc: Doc) -> dict[str, str]:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(doc)
    return {p.field: p.message for p in caught.value.errors}


def test_a_pack_is_read_and_round_trips() -> None:
    catalog = parse_catalog(catalog_with({**PACK, "name": "10k calls"}))
    pack = catalog.credit_pack("k10")
    assert pack is not None
    assert (pack.price.amount, pack.price.currency, dict(pack.credits)) == (
        1500,
        "usd",
        {"api_calls": 10000},
    )
    assert pack.display_name == "10k calls"
    assert catalog_from_document(catalog.to_document()) == catalog


def test_a_catalog_without_packs_keeps_its_document() -> None:
    doc = catalog_with()
    del doc["credit_packs"]
    assert "credit_packs" not in parse_catalog(doc).to_document()


def test_every_problem_is_reported_with_its_path() -> None:
    found = problems(
        catalog_with(
            {"key": "a", "price": {"amount": 0, "currency": "usd"}, "credits": {"export": 5}},
            {"key": "b", "price": {"currency": "dollars"}, "credits": {}, "extra": 1},
            {"key": "a", "price": {"amount": 100, "currency": "usd"}, "credits": {"api_calls": -1}},
            {"key": "c", "price": {"amount": 100, "currency": "usd"}, "credits": {"nope": 1}},
        )
    )
    assert found == {
        "credit_packs[0].price.amount": "must be an integer between 1 and 99999999",
        "credit_packs[0].credits.export": "not a metered feature; metered features: api_calls",
        "credit_packs[1].extra": "unknown key; expected one of key, price, credits, name",
        "credit_packs[1].price.amount": "required",
        "credit_packs[1].price.currency": CURRENCY,
        "credit_packs[1].credits": NON_EMPTY,
        "credit_packs[2].key": "duplicate key a; credit_packs[0] has it",
        "credit_packs[2].credits.api_calls": "must be a number > 0 (the units one purchase adds)",
        "credit_packs[3].credits.nope": "not a metered feature; metered features: api_calls",
    }


def test_the_diff_shows_pack_changes() -> None:
    old = parse_catalog(catalog_with(PACK))
    new = parse_catalog(catalog_with({**PACK, "credits": {"api_calls": 20000}}))
    assert diff_catalogs(old, new).lines() == [
        "~ credit_pack k10: credits.api_calls 10000 -> 20000"
    ]


def test_the_plan_change_policy() -> None:
    doc = catalog_with()
    assert parse_catalog(doc).plan_changes.over_limit.value == "block"
    allowing = parse_catalog({**doc, "plan_changes": {"over_limit": "allow_until_reset"}})
    assert allowing.plan_changes.over_limit.value == "allow_until_reset"
    assert catalog_from_document(allowing.to_document()) == allowing
    assert diff_catalogs(parse_catalog(doc), allowing).lines() == ["+ plan_change over_limit"]
    assert problems({**doc, "plan_changes": {"over_limit": "maybe", "x": 1}}) == {
        "plan_changes.over_limit": "must be one of block, allow_until_reset",
        "plan_changes.x": "unknown key; expected one of over_limit",
    }
