"""Catalog diffs: what `catalog apply` prints and what decides whether a version is stored."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from meterline.catalog import (
    ABSENT,
    Aggregation,
    BooleanEntitlement,
    Catalog,
    FallbackPolicy,
    Meter,
    MeteredEntitlement,
    Op,
    PastDuePolicy,
    diff_catalogs,
    load_catalog,
)
from tests.unit.catalog_strategies import catalogs

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"


def example() -> Catalog:
    return load_catalog(EXAMPLE)


def replace_plan(catalog: Catalog, key: str, **changes: object) -> Catalog:
    plans = tuple(
        dataclasses.replace(p, **changes) if p.key == key else p  # type: ignore[arg-type]
        for p in catalog.plans
    )
    return dataclasses.replace(catalog, plans=plans)


def test_same_catalog_is_empty() -> None:
    diff = diff_catalogs(example(), example())
    assert diff.is_empty and diff.lines() == [] and diff.changes == ()


def test_first_catalog_adds_everything() -> None:
    diff = diff_catalogs(None, example())
    assert diff.created and not diff.is_empty
    assert diff.lines() == [
        "+ meter api_calls",
        "+ meter tokens",
        "+ feature api_calls",
        "+ feature tokens",
        "+ feature export",
        "+ plan free",
        "+ plan basic",
        "+ plan power",
        "+ policy past_due",
        "+ policy unpaid",
        "+ policy canceled",
        "+ policy paused",
    ]


def test_first_empty_catalog_is_still_a_change() -> None:
    diff = diff_catalogs(None, Catalog())
    assert not diff.is_empty and diff.lines() == ["+ catalog (empty)"]


def test_changed_limit_line() -> None:
    old = example()
    basic = old.plan("basic")
    assert basic is not None
    current = basic.features["api_calls"]
    assert isinstance(current, MeteredEntitlement)
    features = {**basic.features, "api_calls": dataclasses.replace(current, limit=500)}
    diff = diff_catalogs(replace_plan(old, "basic", features=features), old)
    assert diff.lines() == ["~ plan basic: features.api_calls.limit 500 -> 1000"]
    (change,) = diff.changed
    assert (change.section, change.key, change.op) == ("plan", "basic", Op.CHANGED)
    assert change.fields[0].old == 500 and change.fields[0].new == 1000


def test_feature_added_to_and_removed_from_a_plan() -> None:
    old = example()
    free = old.plan("free")
    assert free is not None
    features = {k: v for k, v in free.features.items() if k != "export"}
    features["tokens"] = MeteredEntitlement(10)
    new = replace_plan(old, "free", features=features)
    assert diff_catalogs(old, new).lines() == [
        "~ plan free: features.tokens (none) -> {limit: 10, reset: billing_period, overage: block}",
        "~ plan free: features.export false -> (none)",
    ]
    field = diff_catalogs(old, new).changes[0].fields[0]
    assert field.old is ABSENT


def test_meters_added_removed_and_changed() -> None:
    old = example()
    new = dataclasses.replace(
        old,
        meters=(
            Meter("api_calls", Aggregation.COUNT),
            Meter("storage", Aggregation.MAX, name="Storage GB"),
        ),
    )
    assert diff_catalogs(old, new).lines() == [
        "~ meter api_calls: aggregation sum -> count",
        '~ meter api_calls: name "API calls" -> (none)',
        "+ meter storage",
        "- meter tokens",
    ]
    diff = diff_catalogs(old, new)
    assert [c.key for c in diff.added] == ["storage"]
    assert [c.key for c in diff.removed] == ["tokens"]


def test_policy_changes() -> None:
    old = example()
    policies = dataclasses.replace(
        old.payment_policies,
        past_due=PastDuePolicy(grace_days=3, then="basic"),
        paused=None,
        canceled=FallbackPolicy("basic"),
    )
    new = dataclasses.replace(old, payment_policies=policies)
    assert diff_catalogs(old, new).lines() == [
        "~ policy past_due: grace_days 7 -> 3",
        "~ policy past_due: then free -> basic",
        "~ policy canceled: plan free -> basic",
        "- policy paused",
    ]


def test_boolean_and_integer_values_are_told_apart() -> None:
    old = example()
    power = old.plan("power")
    assert power is not None
    features = {**power.features, "export": BooleanEntitlement(False)}
    diff = diff_catalogs(old, replace_plan(old, "power", features=features))
    assert diff.lines() == ["~ plan power: features.export true -> false"]


def test_entry_order_is_not_a_change() -> None:
    old = example()
    new = dataclasses.replace(old, plans=old.plans[::-1], meters=old.meters[::-1])
    assert diff_catalogs(old, new).is_empty


def test_strings_that_look_like_other_values_are_quoted() -> None:
    old = example()
    new = replace_plan(old, "free", name="Free plan")
    assert diff_catalogs(old, new).lines() == ['~ plan free: name Free -> "Free plan"']


@settings(max_examples=100, deadline=None)
@given(catalogs())
def test_a_catalog_against_itself_is_empty(catalog: Catalog) -> None:
    diff = diff_catalogs(catalog, catalog)
    assert diff.is_empty and diff.lines() == []


@settings(max_examples=100, deadline=None)
@given(catalogs())
def test_against_nothing_every_entry_is_added(catalog: Catalog) -> None:
    diff = diff_catalogs(None, catalog)
    expected = [
        *(("meter", m.key) for m in catalog.meters),
        *(("feature", f.key) for f in catalog.features),
        *(("plan", p.key) for p in catalog.plans),
        *(("policy", state) for state, _ in catalog.payment_policies.items()),
    ]
    assert [(c.section, c.key) for c in diff.changes] == expected
    assert all(c.op is Op.ADDED for c in diff.changes)
    assert not diff.is_empty


@settings(max_examples=50, deadline=None)
@given(catalogs(), catalogs())
def test_diff_is_symmetric(a: Catalog, b: Catalog) -> None:
    forward, backward = diff_catalogs(a, b), diff_catalogs(b, a)
    assert {(c.section, c.key) for c in forward.added} == {
        (c.section, c.key) for c in backward.removed
    }
    assert {(c.section, c.key) for c in forward.changed} == {
        (c.section, c.key) for c in backward.changed
    }
    assert forward.is_empty == backward.is_empty


@settings(max_examples=50, deadline=None)
@given(catalogs(), st.data())
def test_empty_exactly_when_the_documents_match_up_to_order(
    catalog: Catalog, data: st.DataObject
) -> None:
    other = data.draw(st.sampled_from([catalog, data.draw(catalogs())]))
    shuffled = dataclasses.replace(
        other,
        meters=tuple(data.draw(st.permutations(other.meters))),
        plans=tuple(data.draw(st.permutations(other.plans))),
    )

    def by_key(c: Catalog) -> str:
        document = c.to_document()
        sections = {
            section: {e["key"]: e for e in document[section]}
            for section in ("meters", "features", "plans")
        }
        return json.dumps(sections | {"policies": document["payment_policies"]}, sort_keys=True)

    assert diff_catalogs(catalog, shuffled).is_empty == (by_key(catalog) == by_key(shuffled))
