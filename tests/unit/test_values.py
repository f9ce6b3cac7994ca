"""The value rule (`meterline.values`): what is refused, and exact arithmetic past 15 digits."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterline.events import Rules, validate_event
from meterline.values import (
    MAX_VALUE,
    exact_sum,
    fits,
    from_micros,
    json_number,
    loads,
    micros,
    to_decimal,
    value_problem,
)
from tests.unit.value_strategies import rule_decimals

RULES = Rules(now_ms=1_800_000_000_000, meters={"api_calls"})


@pytest.mark.parametrize(
    "value",
    [1e-7, 0.1234567, 0.30000000000000004, 1234567890123.4567, 1e15 + 1, -0.5, 123456789012345.6],
)
def test_a_value_beyond_the_rule_is_refused_naming_the_field(value: float) -> None:
    raw = {"id": "e1", "customer": "c", "meter": "api_calls", "value": value}
    found = validate_event(raw, 1, RULES)
    assert isinstance(found, list) and [e.field for e in found] == ["value"]


@pytest.mark.parametrize("value", [0.1, 0.000001, 1e15, 999999999.999999, 123456789012345, 3])
def test_a_value_within_the_rule_is_kept_exactly(value: float) -> None:
    raw = {"id": "e1", "customer": "c", "meter": "api_calls", "value": value}
    found = validate_event(raw, 1, RULES)
    assert not isinstance(found, list)
    assert to_decimal(found.value) == Decimal(repr(value) if isinstance(value, float) else value)


@given(rule_decimals())
def test_every_value_under_the_rule_travels_as_a_double_unchanged(d: Decimal) -> None:
    carried = orjson.loads(orjson.dumps(float(d)))
    assert to_decimal(carried) == d
    assert micros(carried) == int(d.scaleb(6))
    assert value_problem(carried) is None and fits(carried)


@given(st.floats(0, float(MAX_VALUE)) | st.decimals(0, MAX_VALUE).map(float))
def test_the_fast_check_agrees_with_the_rule(v: float) -> None:
    assert fits(v) == (value_problem(v) is None)


def test_zero_however_written_is_a_value() -> None:
    assert value_problem(Decimal("0.0000000000")) is None
    assert value_problem(Decimal("1.50000000000")) is None
    assert value_problem(Decimal("1.0000001")) is not None


def test_sums_are_exact_past_15_digits() -> None:
    assert exact_sum([0.1] * 10) == 1
    assert exact_sum([1e15] * 10 + [3]) == Decimal("10000000000000003")
    assert from_micros(micros(Decimal("10000000000000003.000001"))) == Decimal(
        "10000000000000003.000001"
    )


def test_quantities_are_written_as_exact_json_numbers() -> None:
    big = Decimal("10000000000000003")
    doc = orjson.dumps({"a": json_number(big), "b": json_number(Decimal("0.1") * 10), "c": None})
    assert doc == b'{"a":10000000000000003,"b":1,"c":null}'
    long = Decimal("1234567890123456.5")
    assert orjson.dumps(json_number(long)) == b"1234567890123456.5"
    assert loads(b'{"v":1234567890123456.5,"w":0.1}') == {"v": long, "w": 0.1}
