"""The event model: validation rules of the ingest contract, and the Kafka codec."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterline.errors import FieldError
from meterline.events import (
    MAX_FUTURE_MS,
    PoisonMessage,
    Rules,
    UsageEvent,
    decode_event,
    encode_event,
    parse_timestamp,
    validate_event,
)
from tests.unit.value_strategies import rule_floats

NOW = 1_800_000_000_000
RULES = Rules(now_ms=NOW, meters={"api_calls", "tokens"})
ids = st.text(
    st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), min_size=1, max_size=128
)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)


def valid_raw() -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries(
        {"id": ids, "customer": ids, "meter": st.sampled_from(["api_calls", "tokens"])},
        optional={
            "value": st.integers(0, 10**15) | rule_floats(),
            "timestamp": st.integers(NOW - 35 * 86_400_000, NOW + MAX_FUTURE_MS),
            "properties": st.dictionaries(st.text(max_size=10), json_scalars, max_size=32),
        },
    )


@given(valid_raw())
def test_valid_events_round_trip_through_the_codec(raw: dict[str, object]) -> None:
    event = validate_event(raw, 7, RULES)
    assert isinstance(event, UsageEvent)
    assert decode_event(encode_event(event)) == event
    assert event.value == float(raw.get("value", 1))  # type: ignore[arg-type]
    assert event.key == f"7/{raw['customer']}".encode()


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


BAD_FIELDS: list[tuple[str, object]] = [
    ("id", ""),
    ("id", "x" * 129),
    ("id", 5),
    ("id", None),
    ("id", "a\x00b"),
    ("customer", ""),
    ("customer", ["c"]),
    ("customer", "x" * 129),
    ("meter", "unknown_meter"),
    ("meter", 3),
    ("value", -1),
    ("value", 1e15 + 1),
    ("value", math.nan),
    ("value", math.inf),
    ("value", "3"),
    ("value", True),
    ("value", 10**20),
    ("timestamp", "2026-13-01T00:00:00Z"),
    ("timestamp", "2027-01-15T08:00:00"),
    ("timestamp", NOW - 36 * 86_400_000),
    ("timestamp", NOW + MAX_FUTURE_MS + 1),
    ("timestamp", "yesterday"),
    ("timestamp", 1.5),
    ("timestamp", True),
    ("properties", [1]),
    ("properties", {str(i): i for i in range(33)}),
    ("properties", nested(300)),  # orjson reads 1,024 levels, writes 254
    ("properties", nested(253)),  # 254 once written inside the event
    ("tenant", "other"),
    # Unicode line and paragraph separators, other controls, format characters (issue 21)
    ("id", "a\u2028b"),
    ("customer", "c\u2029"),
    ("id", "next\x85line"),
    ("customer", "\u202eevil"),
    ("id", "zero\u200bwidth"),
    ("customer", "\ufeffbom"),
    ("id", "lone\ud800"),
    ("meter", "api_calls\u200d"),
    # ISO 8601 forms that are not RFC 3339 date-times (issue 21), each inside the window
    ("timestamp", "2027-W02-5T08:00:00Z"),
    ("timestamp", "2027-015T08:00:00Z"),
    ("timestamp", "20270115T080000Z"),
    ("timestamp", "2027-01-15T08:00Z"),
    ("timestamp", "2027-01-15T08:00:00+0100"),
    ("timestamp", "2027-01-15T08:00:00+01"),
    ("timestamp", "2027-01-15T08:00:00+01:00:00"),
    ("timestamp", "2027-01-15T08:00:00,5Z"),
    ("timestamp", "2027-01-15T08:00:00.Z"),
    ("timestamp", "2027-01-15T08:00:00.1234567890Z"),
    ("timestamp", "2027-01-15 08:00:00Z"),
    ("timestamp", "\uff12\uff10\uff12\uff17-01-15T08:00:00Z"),  # full-width digits
    # integers past the signed 64-bit range (issue 21)
    ("properties", {"n": 2**63}),
    ("properties", {"n": -(2**63) - 1}),
    ("properties", {"a": [1, {"n": 2**64}]}),
    ("properties", {"n": 10**30}),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_each_invalid_field_is_rejected_by_name(field: str, value: object) -> None:
    raw = {"id": "e1", "customer": "c1", "meter": "api_calls", field: value}
    errors = validate_event(raw, 1, RULES, index=4)
    assert isinstance(errors, list)
    assert [(e.field, e.index) for e in errors] == [(field, 4)]


@given(st.sampled_from(BAD_FIELDS), st.sampled_from(BAD_FIELDS))
def test_every_bad_field_is_reported_at_once(a: tuple[str, object], b: tuple[str, object]) -> None:
    raw: dict[str, object] = {"id": "e1", "customer": "c1", "meter": "api_calls"}
    raw.update([a, b])
    errors = validate_event(raw, 1, RULES)
    assert isinstance(errors, list)
    assert {e.field for e in errors} == {a[0], b[0]}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "é\u00a0nbsp"),
        ("customer", "👩‍💻"[0]),
        ("id", "\ue000private"),
        ("customer", "日本\u3000語"),
        ("timestamp", "2027-01-15t08:00:00z"),
        ("timestamp", "2027-01-15T09:00:00.123456789+01:00"),
        ("timestamp", "2027-01-15T08:00:00-00:00"),
        ("properties", {"max": 2**63 - 1, "min": -(2**63), "big": 2**53 + 1}),
    ],
)
def test_edge_values_just_inside_the_rules_are_accepted(field: str, value: object) -> None:
    raw = {"id": "e1", "customer": "c1", "meter": "api_calls", field: value}
    assert isinstance(validate_event(raw, 1, RULES), UsageEvent)


def test_a_refused_character_is_named_with_its_category() -> None:
    errors = validate_event({"id": "a\u2028", "customer": "c", "meter": "tokens"}, 1, RULES)
    assert isinstance(errors, list)
    assert "U+2028 (category Zl" in errors[0].message


def test_an_integer_past_64_bits_is_named_by_its_path() -> None:
    raw = {"id": "e", "customer": "c", "meter": "tokens", "properties": {"a": [0, {"n": 2**63}]}}
    errors = validate_event(raw, 1, RULES)
    assert isinstance(errors, list)
    assert [(e.field, e.message.split()[0]) for e in errors] == [("properties", "properties.a.1.n")]


def test_a_non_object_is_one_error() -> None:
    assert validate_event([1, 2], 1, RULES, 0) == [
        FieldError("", "an event must be a JSON object", 0)
    ]


def test_missing_value_and_timestamp_take_defaults() -> None:
    event = validate_event({"id": "e", "customer": "c", "meter": "tokens"}, 1, RULES)
    assert isinstance(event, UsageEvent)
    assert (event.value, event.timestamp_ms, event.received_ms) == (1.0, NOW, NOW)


def test_negative_zero_is_normalized_to_zero() -> None:
    event = validate_event({"id": "e", "customer": "c", "meter": "tokens", "value": -0.0}, 1, RULES)
    assert isinstance(event, UsageEvent)
    assert math.copysign(1, event.value) == 1
    assert b'"value":0.0,' in encode_event(event)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-11-21T10:15:00Z", 1_795_256_100_000),
        ("2026-11-21T11:15:00+01:00", 1_795_256_100_000),
        ("2026-11-21T10:15:00.250Z", 1_795_256_100_250),
        ("2026-11-21", None),
        ("2026-11-21T10:15:00", None),
        ("2026-W47-6T10:15:00Z", None),
        ("2026-11-21T10:15:00+0100", None),
        ("2026-11-21T10:15:60Z", None),
        ("2026-02-30T10:15:00Z", None),
        ("2026-11-21t10:15:00z", 1_795_256_100_000),
        ("2026-11-21T10:15:00.123456789Z", 1_795_256_100_123),
    ],
)
def test_rfc3339_parsing(text: str, ms: int | None) -> None:
    assert parse_timestamp(text) == ms


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        b"not json",
        b"[1]",
        b'{"schema": 2}',
        b'{"schema": 1, "id": "x"}',
        b'{"schema":1,"tenant":1,"id":"a","customer":"c","meter":"m","value":-1,"timestamp":1,"received_at":1}',
        b'{"schema":1,"tenant":"1","id":"a","customer":"c","meter":"m","value":1,"timestamp":1,"received_at":1}',
        b'{"schema":1,"tenant":1,"id":"a\\u0000","customer":"c","meter":"m","value":1,"timestamp":1,"received_at":1}',
    ],
)
def test_undecodable_messages_are_poison_with_a_reason(data: bytes | None) -> None:
    with pytest.raises(PoisonMessage) as info:
        decode_event(data)
    assert info.value.reason
