"""`notify_at` in the catalog: percentages of a limit per metered feature in a plan, with a plan
default; every bad percentage reported at its own path."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from meterline.catalog import CatalogError, parse_catalog
from meterline.catalog.diff import diff_catalogs


def document(plan_notify: object = None, feature_notify: object = None) -> dict[str, Any]:
    entitlement: dict[str, Any] = {"limit": 1000, "reset": "month", "overage": "block"}
    if feature_notify is not None:
        entitlement["notify_at"] = feature_notify
    plan: dict[str, Any] = {"key": "basic", "default": True, "features": {"calls": entitlement}}
    if plan_notify is not None:
        plan["notify_at"] = plan_notify
    return {
        "meters": [{"key": "calls", "aggregation": "sum"}],
        "features": [
            {"key": "calls", "kind": "metered", "meter": "calls"},
            {"key": "sso", "kind": "boolean"},
        ],
        "plans": [plan],
    }


def problems(data: object) -> dict[str, str]:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(data)
    return {e.field: e.message for e in caught.value.errors}


def test_a_feature_takes_its_own_thresholds_else_the_plans() -> None:
    plan = parse_catalog(document([50, 80, 100], [90])).plans[0]
    assert plan.thresholds("calls") == (90,)
    assert parse_catalog(document([50, 80, 100])).plans[0].thresholds("calls") == (50, 80, 100)
    assert parse_catalog(document([50], [])).plans[0].thresholds("calls") == ()
    assert parse_catalog(document()).plans[0].thresholds("calls") == ()


def test_percentages_may_be_decimal_and_pass_100() -> None:
    plan = parse_catalog(document(feature_notify=[12.5, "99.9", 150])).plans[0]
    assert plan.thresholds("calls") == (Decimal("12.5"), Decimal("99.9"), 150)


def test_thresholds_round_trip_through_the_document() -> None:
    catalog = parse_catalog(document([50, 80, 100], ["12.5"]))
    assert parse_catalog(catalog.to_document()) == catalog
    assert catalog.to_document()["plans"][0]["features"]["calls"]["notify_at"] == ["12.5"]


def test_each_bad_percentage_is_reported_at_its_index() -> None:
    found = problems(document([0, 50, 50], [80, "x", 1001, True, -5]))
    assert set(found) == {
        "plans[0].notify_at[0]",
        "plans[0].notify_at[2]",
        "plans[0].features.calls.notify_at[1]",
        "plans[0].features.calls.notify_at[2]",
        "plans[0].features.calls.notify_at[3]",
        "plans[0].features.calls.notify_at[4]",
    }
    assert "ascending" in found["plans[0].notify_at[2]"]
    assert "> 0 and <= 1000" in found["plans[0].features.calls.notify_at[1]"]


@pytest.mark.parametrize("bad", ["80", 80, {"a": 1}, list(range(1, 12))])
def test_notify_at_must_be_a_short_list(bad: object) -> None:
    found = problems(document(plan_notify=bad))
    assert "list of at most 10 percentages" in found["plans[0].notify_at"]


def test_only_metered_features_take_thresholds() -> None:
    doc = document()
    doc["plans"][0]["features"]["sso"] = {"enabled": True, "notify_at": [50]}
    assert "plans[0].features.sso" in problems(doc)


def test_a_threshold_change_shows_in_the_diff() -> None:
    before, after = parse_catalog(document()), parse_catalog(document([50, 80], [90]))
    assert diff_catalogs(before, after).lines() == [
        "~ plan basic: features.calls.notify_at (none) -> [90]",
        "~ plan basic: notify_at (none) -> [50, 80]",
    ]
