"""The contract of the Kafka message (`meterline.events.wire.WIRE`) and every codec built on it.

- The layout is pinned: one literal message, so a change to `WIRE` shows here as a change of
  the contract (every consumer of the topic reads it).
- The encoder (`encode_events`, ingest's hot path, and `encode_event`) writes, byte for byte,
  what orjson writes for the document of `WIRE` built field by field here.
- The aggregator's columnar decoder (aggregator/decoding.py) takes a message, alone or in a
  run, only as `decode_event` does, on messages built from `WIRE` with each field valid, of
  another kind, or missing; and it takes every message the encoder writes.
A fast path that drifts from the definition fails one of these.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from aggregator.decoding import COLUMN, Events, decode_columns
from meterline.events import (
    MAX_ID_LEN,
    SCHEMA_VERSION,
    PoisonMessage,
    UsageEvent,
    ValidEvents,
    decode_event,
    encode_event,
    encode_events,
)
from meterline.events.wire import WIRE, Kind
from tests.unit.value_strategies import rule_floats

TEXTS = st.text(
    st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=MAX_ID_LEN
) | st.sampled_from(['q"\\', "é\u00a0", "a:b", "\u2028"])  # no control character: the wire's rule
INTS = st.integers(0, 10**14)
PROPERTIES = st.none() | st.dictionaries(
    st.text(max_size=4),
    st.integers(-(2**63), 2**63 - 1) | st.text(max_size=4) | st.none(),
    max_size=4,
)
events_st = st.builds(UsageEvent, INTS, TEXTS, TEXTS, TEXTS, rule_floats(), INTS, INTS, PROPERTIES)


def reference(e: UsageEvent) -> bytes:
    """The message as the definition says: the fields of `WIRE` in order, each the event's
    attribute (the schema version for the schema), an `OBJECT` left out when empty."""
    doc: dict[str, Any] = {}
    for f in WIRE:
        value = SCHEMA_VERSION if f.kind is Kind.SCHEMA else getattr(e, f.attribute)
        if f.kind is not Kind.OBJECT or value:
            doc[f.name] = value
    return orjson.dumps(doc)


def test_the_layout_is_the_contract() -> None:
    e = UsageEvent(7, "e1", "c1", "api_calls", 3.0, 1764000000000, 1764000000123, {"m": "s"})
    assert encode_event(e) == (
        b'{"schema":1,"tenant":7,"id":"e1","customer":"c1","meter":"api_calls","value":3.0,'
        b'"timestamp":1764000000000,"received_at":1764000000123,"properties":{"m":"s"}}'
    )
    assert e.key == b"7/c1"
    assert encode_event(dataclasses.replace(e, properties={})) == encode_event(
        dataclasses.replace(e, properties=None)
    )


@given(events_st)
def test_one_event_is_written_as_the_definition_says(e: UsageEvent) -> None:
    assert encode_event(e) == reference(e)
    assert decode_event(encode_event(e)) == dataclasses.replace(e, properties=e.properties or None)


@given(st.lists(events_st, min_size=1, max_size=6), INTS, INTS)
def test_a_batch_is_written_as_the_definition_says(
    events: list[UsageEvent], tenant: int, received: int
) -> None:
    valid = ValidEvents(
        [e.id for e in events],
        [e.customer for e in events],
        [e.meter for e in events],
        [e.value for e in events],
        [e.timestamp_ms for e in events],
        [e.properties for e in events],
    )
    encoded = encode_events(valid, tenant, received)
    mine = [dataclasses.replace(e, tenant_id=tenant, received_ms=received) for e in events]
    assert encoded.values == list(map(reference, mine))
    assert encoded.keys == [e.key for e in mine]
    assert encoded.ids == [e.id for e in events]


def test_a_batch_with_line_breaks_in_its_texts_is_written_as_orjson_writes_it() -> None:
    """The batch encoder cuts one text at line ends into messages: a line break in a text
    (outside the wire's rule, which the event rules refuse) is escaped in the value and kept
    in the key, event by event."""
    events = [
        UsageEvent(7, "e\n1", "c\n1", "m\n", 1.0, 5, 9, {"k\n": "v\n"}),
        UsageEvent(7, "e2", "c2", "m", 2.0, 6, 9, None),
    ]
    valid = ValidEvents(*([getattr(e, a) for e in events] for a in _COLUMNS))
    encoded = encode_events(valid, 7, 9)
    assert encoded.values == list(map(reference, events))
    assert encoded.keys == [b"7/c\n1", b"7/c2"]


_COLUMNS = ("id", "customer", "meter", "value", "timestamp_ms", "properties")


# Messages built from the definition: every field valid for its kind, then up to two of them
# of another kind, or missing.
_MISSING = object()
_VALID: dict[Kind, st.SearchStrategy[Any]] = {
    Kind.SCHEMA: st.just(SCHEMA_VERSION),
    Kind.INTEGER: INTS,
    Kind.TEXT: TEXTS,
    Kind.VALUE: rule_floats(),
    Kind.OBJECT: PROPERTIES,
}
_OTHER = (
    st.sampled_from(
        [None, True, 1.0, -1, -1.0, -0.5, 2, "", "x" * (MAX_ID_LEN + 1), "tab\t", "del\x7f"]
    )
    | st.sampled_from([[], {}, 1e16, 1e15 + 1, -0.0, 10**15, 2**63])
    | st.integers(-5, 5)
    | st.floats()
)
_valid_docs = st.fixed_dictionaries({f.name: _VALID[f.kind] for f in WIRE})
_spoils = st.lists(st.tuples(st.sampled_from(WIRE), _OTHER | st.just(_MISSING)), max_size=2)
messages = st.builds(
    lambda doc, spoils: orjson.dumps(
        {k: v for k, v in {**doc, **{f.name: v for f, v in spoils}}.items() if v is not _MISSING}
    ),
    _valid_docs,
    _spoils,
)


_GOOD = {
    "schema": SCHEMA_VERSION,
    "tenant": 7,
    "id": "e1",
    "customer": "c1",
    "meter": "m",
    "value": 1.0,
    "timestamp": 5,
    "received_at": 5,
}
_NOT_OF_KIND: dict[Kind, list[Any]] = {
    Kind.SCHEMA: [2, "1", True, None, _MISSING],
    Kind.INTEGER: [True, 1.0, "1", None, [], _MISSING],
    Kind.TEXT: ["", "x" * (MAX_ID_LEN + 1), "tab\t", "del\x7f", "nul\x00", 1, None, _MISSING],
    Kind.VALUE: [-1.0, -0.5, 1e15 + 1, 1e16, True, "1", None, _MISSING],
    Kind.OBJECT: [[], "p", 1, True],
}


@pytest.mark.parametrize(
    ("name", "bad"), [(f.name, bad) for f in WIRE for bad in _NOT_OF_KIND[f.kind]]
)
def test_a_field_not_of_its_kind_is_refused_by_both_decoders(name: str, bad: object) -> None:
    doc = {k: v for k, v in {**_GOOD, name: bad}.items() if v is not _MISSING}
    data = orjson.dumps(doc)
    assert decode_columns([orjson.dumps(_GOOD), data]) is None
    with pytest.raises(PoisonMessage):
        decode_event(data)


def _decoded(data: bytes) -> UsageEvent | None:
    try:
        return decode_event(data)
    except PoisonMessage:
        return None


@settings(max_examples=300, deadline=None)
@given(messages)
def test_the_columnar_decoder_takes_a_message_only_as_decode_event_does(data: bytes) -> None:
    fast = decode_columns([data])
    event("columns" if fast is not None else "message by message")
    if fast is not None:
        assert fast.rows() == [_decoded(data)]


@settings(max_examples=150, deadline=None)
@given(st.lists(messages | st.sampled_from([b"{", b"[1]", b"null"]), min_size=1, max_size=6))
def test_a_run_is_decoded_as_columns_only_if_each_message_is(values: list[bytes]) -> None:
    together = decode_columns(values)
    alone = [decode_columns([v]) for v in values]
    if together is None:
        assert None in alone
    else:
        assert together.rows() == [a.rows()[0] for a in alone if a is not None]


@given(st.lists(events_st, min_size=1, max_size=6))
def test_the_columnar_decoder_takes_every_message_the_encoder_writes(
    events: list[UsageEvent],
) -> None:
    got = decode_columns([encode_event(e) for e in events])
    assert got is not None
    assert got.rows() == [decode_event(encode_event(e)) for e in events]


def test_every_field_with_an_attribute_has_its_column() -> None:
    assert set(COLUMN) == {f.name for f in WIRE if f.attribute}
    assert set(COLUMN.values()) == {f.name for f in dataclasses.fields(Events)}
