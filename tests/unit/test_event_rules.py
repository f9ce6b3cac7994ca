"""The one validation: each field's quick look at a column never accepts what the field's rule
refuses, and normalizes as the rule does; a batch is judged as its events one by one."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from meterline.events import (
    EVENT_FIELDS,
    MAX_ID_LEN,
    MAX_PROPERTIES,
    Rules,
    UsageEvent,
    check_events,
    sent_events,
)
from meterline.events import validate_event as validate
from meterline.events.rules import FIELD_RULES
from meterline.values import MAX_VALUE
from tests.unit.test_events import BAD_FIELDS, NOW, valid_raw
from tests.unit.value_strategies import rule_floats

RULES = Rules(now_ms=NOW, meters={"api_calls", "tokens", ""})
DAY = 86_400_000
_, BAD_VALUES = zip(*BAD_FIELDS, strict=True)
anything = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=130)
    | st.sampled_from(BAD_VALUES)
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(-(2**64), 2**64), max_size=34)
)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "id": st.text(min_size=1, max_size=128),
    "customer": st.text('ab:"\\é\u00a0', min_size=1, max_size=128),
    "meter": st.sampled_from(["api_calls", "tokens", ""]),
    "value": st.integers(0, 10**15) | rule_floats() | st.just(-0.0),
    "timestamp": st.integers(NOW - 36 * DAY, NOW + 6 * 60_000)
    | st.none()
    | st.sampled_from(
        ["2027-01-15T08:00:00Z", "2027-01-15T08:00:00.5+02:00", "2027-02-30T08:00:00Z"]
    ),
    "properties": st.none()
    | st.dictionaries(st.text(max_size=3), st.integers(-(2**64), 2**64) | st.text(), max_size=34),
}


def _typed(field: str, v: object) -> bool:
    """Whether `v` is what a typed decoder vouches for in `field` (`model.TYPED`)."""
    if field in ("id", "customer"):
        return type(v) is str and 1 <= len(v) <= MAX_ID_LEN
    if field == "meter":
        return type(v) is str
    if field == "value":
        return type(v) is float and 0 <= v <= MAX_VALUE
    if field == "timestamp":
        return v is None or type(v) in (int, str)
    return v is None or (type(v) is dict and len(v) <= MAX_PROPERTIES)


def _same(a: object, b: object) -> bool:
    """Equal, and the same double sign (-0.0 is not 0.0 here)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


def test_a_values_look_makes_every_integer_a_double_also_beside_an_equal_double() -> None:
    """Found by the property below: 1 and 1.0 are one member of a set, so the look once judged
    the column's kinds by its distinct values and let the integer through."""
    _, look = FIELD_RULES["value"]
    looked = look([1.0, 1, 2.5], RULES, False)
    assert looked == [1.0, 1.0, 2.5]
    assert [type(v) for v in looked] == [float, float, float]


@pytest.mark.parametrize("field", EVENT_FIELDS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_quick_look_takes_a_column_only_as_the_rule_takes_each_value(
    field: str, data: st.DataObject
) -> None:
    column = data.draw(st.lists(VALID[field] | anything, min_size=1, max_size=5))
    check, look = FIELD_RULES[field]
    by_rule = [check(v, RULES) for v in column]
    for typed in (False, True) if all(_typed(field, v) for v in column) else (False,):
        looked = look(list(column), RULES, typed)
        event(f"looked (typed: {typed})" if looked is not None else "value by value")
        if looked is not None:
            assert all(problem is None for _, problem in by_rule)
            assert all(map(_same, looked, [normal for normal, _ in by_rule]))


@pytest.mark.parametrize("field", EVENT_FIELDS)
@settings(deadline=None)
@given(data=st.data())
def test_a_quick_look_takes_valid_columns_in_the_common_shape(
    field: str, data: st.DataObject
) -> None:
    common = {
        "id": st.text("abc-_0123456789", min_size=1, max_size=128),
        "meter": st.sampled_from(["api_calls", "tokens"]),
        "value": rule_floats(),
        "timestamp": st.integers(NOW - 35 * DAY, NOW)
        | st.sampled_from(["2027-01-15T08:00:00Z", "2027-01-15T08:00:00.5+02:00"]),
        "properties": st.none() | st.dictionaries(st.text(max_size=3), st.text(), max_size=32),
    }
    column = data.draw(st.lists(common.get(field, common["id"]), min_size=1, max_size=5))
    assert FIELD_RULES[field][1](column, RULES, False) is not None
    assert FIELD_RULES[field][1](column, RULES, True) is not None


@settings(max_examples=200, deadline=None)
@given(st.lists(valid_raw() | st.dictionaries(st.sampled_from(EVENT_FIELDS), anything), max_size=5))
def test_a_batch_is_judged_as_its_events_one_by_one(raws: list[dict[str, Any]]) -> None:
    sent, shape = sent_events(raws, range(len(raws)))
    checked = check_events(sent, RULES)
    alone = [validate(raw, 7, RULES, i) for i, raw in enumerate(raws)]
    if all(isinstance(e, UsageEvent) for e in alone):
        assert not shape and not isinstance(checked, list)
        assert [checked.event(i, 7, NOW) for i in range(len(raws))] == alone
    else:
        errors = [e for one in alone if isinstance(one, list) for e in one]
        assert shape + (checked if isinstance(checked, list) else []) == errors
