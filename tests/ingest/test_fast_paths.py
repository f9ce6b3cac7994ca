"""The hot path's shortcuts answer exactly as the paths they stand in for.

- The typed route (msgspec's structs, then the rules and the encoder, then the key count)
  takes only bodies that the route through plain JSON values accepts, as the very same Kafka
  values and keys, from a JSON array and NDJSON lines alike (Hypothesis, over valid and invalid
  events), and it does take bodies in the common shape.
- A whole request body is judged alike by both routes (the same events, or the same errors),
  also for what ingest refuses beyond the event rules: repeated keys, and events too large for
  a Kafka message (at the exact byte of the limit).
- The Redis deduper's packed call keeps each id's answer in its place, whatever the ids hold.
- The bare POST /v1/events handler (`create_server`) answers as the FastAPI route
  (`create_app`): same status, body and Retry-After for every outcome of the contract.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ingest.app import Dependencies, create_app, create_server
from ingest.body import REPEATED, Format
from ingest.caches import KeyCache, MeterCache
from ingest.ratelimit import RateLimitedSink, TokenBuckets
from ingest.sinks import MemorySink
from ingest.validation import validate_body, validate_typed, validate_values
from meterline.catalog import parse_catalog
from meterline.catalog.repository import MemoryCatalogRepository
from meterline.dedupe import RedisDeduper
from meterline.errors import ValidationFailed
from meterline.events import (
    MAX_FUTURE_MS,
    RESERVATION_PROPERTY,
    EncodedEvents,
    Rules,
    UsageEvent,
    encode_event,
)
from meterline.events import validate_event as validate
from meterline.kafka.config import MESSAGE_MAX_BYTES, MESSAGE_OVERHEAD
from meterline.redis import connect_async
from meterline.tenants import MemoryTenantRepository
from tests.ingest.support import CATALOG
from tests.unit.test_events import BAD_FIELDS, nested
from tests.unit.value_strategies import rule_floats

NOW = 1_800_000_000_000
RULES = Rules(now_ms=NOW, meters={"api_calls": "value", "tokens": "value", "": "value"})
DAY = 86_400_000
WIRE_INTS = st.integers(-(2**63), 2**64 - 1)  # what orjson reads as integers
SAFE_INTS = st.integers(-(2**53 - 1), 2**53 - 1)  # orjson's strict integers
# Common events leave out what the typed route leaves to plain values: explicit nulls.

texts = st.text(max_size=130) | st.sampled_from(["e1", "x" * 128, "x" * 129, "a\x00b", "é\u00a0"])
numbers = (
    st.integers(-5, 10**16)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([True, False, 1e15, 1e15 + 1, -0.0, math.nan, 10**20])
)
timestamps = (
    st.integers(NOW - 36 * DAY, NOW + MAX_FUTURE_MS + 5)
    | st.sampled_from(["2027-01-15T08:00:00Z", "2027-01-15T08:00:00", "2027-01-15", "soon", 1.5])
    | st.none()
)
anything = st.none() | st.booleans() | texts | numbers | st.lists(st.integers(), max_size=2)
properties = st.dictionaries(st.text(max_size=3), WIRE_INTS, max_size=34) | anything
raw_events = st.fixed_dictionaries(
    {},
    optional={
        "id": texts | anything,
        "customer": texts | anything,
        "meter": st.sampled_from(["api_calls", "tokens", ""]) | anything,
        "value": numbers | anything,
        "timestamp": timestamps | anything,
        "properties": properties,
        "tenant": anything,
    },
)


common_events = st.fixed_dictionaries(
    {
        "id": st.text(st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=128),
        "customer": st.text("xyz_09é ", min_size=1, max_size=128),
        "meter": st.sampled_from(["api_calls", "tokens"]),
    },
    optional={
        "value": st.integers(0, 10**15) | rule_floats(),
        "timestamp": st.integers(NOW - 35 * DAY, NOW + MAX_FUTURE_MS)
        | st.sampled_from(["2027-01-15T08:00:00Z", "2027-01-15T08:00:00.5+02:00"]),
        "properties": st.dictionaries(st.text(max_size=5), SAFE_INTS | st.text(), max_size=32),
    },
)
# A common event with one field set to anything at all (or a field added).
spoiled_events = st.builds(
    lambda event, field, value: {**event, field: value},
    common_events,
    st.sampled_from(["id", "customer", "meter", "value", "timestamp", "properties", "tenant"]),
    texts | numbers | timestamps | properties | anything,
)


@settings(max_examples=400)
@given(st.lists(common_events | spoiled_events | raw_events | anything, min_size=1, max_size=4))
def test_the_typed_route_never_disagrees_with_plain_values(raws: list[Any]) -> None:
    event("typed" if _as_plain_values_do(raws) else "plain values")


EDGES: list[tuple[str, object]] = [
    *BAD_FIELDS,
    ("meter", ""),  # in this catalog, and still refused
    ("id", "x" * 128),
    ("customer", "é\u00a0"),  # valid, not printable
    ("id", 'a "quoted" id'),  # escaped in the Kafka value
    ("customer", "back\\slash"),
    ("value", 0),
    ("value", -0.0),
    ("value", -1.0),  # read as absent by the structs: the key count sends it to plain values
    ("value", 10**15),
    ("value", 1e15),
    ("value", 10**15 + 1),
    ("value", 1e-300),
    ("timestamp", NOW - 35 * DAY),
    ("timestamp", NOW - 35 * DAY - 1),
    ("timestamp", NOW + MAX_FUTURE_MS),
    ("timestamp", "2027-01-15T08:05:00.001Z"),
    ("timestamp", None),
    ("timestamp", ""),  # the only text among integers: no RFC 3339 line to match
    ("properties", None),
    ("properties", {}),
    ("properties", {str(i): i for i in range(32)}),
    ("properties", {"nested": {"deep": [1, "x", None]}}),
    ("properties", {"big": 2**60}),
    ("properties", nested(252)),  # the deepest orjson writes inside the event
]


@pytest.mark.parametrize(("field", "value"), EDGES)
def test_edge_values_are_judged_as_plain_values_are(field: str, value: object) -> None:
    good = {"id": "e1", "customer": "c1", "meter": "api_calls"}
    _as_plain_values_do([good, {**good, "id": "e2", field: value}])
    _as_plain_values_do([{**good, field: value}])


def _as_plain_values_do(raws: list[Any]) -> bool:
    """Assert that the typed route takes `raws` only as the route through plain values does
    (same values and keys), sent as a JSON array and as NDJSON; whether it took them."""
    array = json.dumps(raws).encode()  # the standard library writes big integers and NaN too
    ndjson = b"\n".join(json.dumps(raw).encode() for raw in raws)
    took = [_agrees(array, Format.JSON), _agrees(ndjson, Format.NDJSON)]
    assert took[0] == took[1] or not all(isinstance(r, dict) for r in raws)
    return took[0]


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return "not JSON"


def _agrees(body: bytes, fmt: Format) -> bool:
    typed = validate_typed(body, fmt, 7, RULES, 1000)
    if typed is not None:
        assert validate_values(body, fmt, 7, RULES, {}, 1000) == typed
    return typed is not None


@pytest.mark.parametrize("fmt", [Format.JSON, Format.NDJSON])
def test_properties_too_deep_for_msgspec_are_refused_as_bad_input(fmt: Format) -> None:
    """msgspec gives up (RecursionError) on properties ~1,000 levels deep, which orjson still
    reads: the body goes the slow way and is refused by name, not answered 500 (and with the
    body as a whole, whose keys cannot be checked that deep)."""
    deep = b'{"x":' * 1000 + b"1" + b"}" * 1000
    good = b'{"id":"e1","customer":"c","meter":"api_calls"}'
    bad = b'{"id":"e2","customer":"c","meter":"api_calls","properties":%s}' % deep
    body = b"[%s,%s]" % (good, bad) if fmt is Format.JSON else b"%s\n%s" % (good, bad)
    with pytest.raises(ValidationFailed) as refused:
        validate_body(body, fmt, 7, RULES, {}, 1000)
    assert ("properties", 1) in [(e.field, e.index) for e in refused.value.errors]


def _room(event: dict[str, Any], tenant: int = 7) -> int:
    """How many bytes of text a property `blob` of `event` (id, customer, meter) may hold with
    the event's Kafka message at the producer's limit exactly (an independent sum, not ingest's
    own check)."""
    props = {"blob": ""}
    value = encode_event(
        UsageEvent(tenant, event["id"], event["customer"], event["meter"], 1.0, NOW, NOW, props)
    )
    key = f"{tenant}/{event['customer']}".encode()
    return MESSAGE_MAX_BYTES - MESSAGE_OVERHEAD - len(key) - len(value)


def _outcome(body: bytes, fmt: Format) -> EncodedEvents | list[tuple[int | None, str]]:
    try:
        return validate_body(body, fmt, 7, RULES, {}, 1000)
    except ValidationFailed as exc:
        return [(e.index, e.field) for e in exc.errors]


def _both_paths(raws: list[Any]) -> EncodedEvents | list[tuple[int | None, str]]:
    """The outcome of `raws` as a JSON array, which the typed route may take, and as the same
    array behind a space (which only the route through plain values takes); asserted equal."""
    array = json.dumps(raws).encode()  # big integers and NaN too
    columnar, by_event = _outcome(array, Format.JSON), _outcome(b" " + array, Format.JSON)
    assert columnar == by_event
    return columnar


def _blob(event: dict[str, Any], extra: int) -> dict[str, Any]:
    """`event`'s id, customer and meter, and a property that takes its Kafka message to
    `extra` bytes past the limit."""
    named = {k: event[k] for k in ("id", "customer", "meter")}
    return {**named, "properties": {"blob": "x" * (_room(event) + extra)}}


@pytest.mark.parametrize("customer", ["c1", "é" * 128, 'q"\\'])
def test_events_too_large_for_a_kafka_message_are_refused_by_both_paths(customer: str) -> None:
    good = {"id": "e1", "customer": customer, "meter": "api_calls"}
    fits, over = _blob({**good, "id": "e2"}, 0), _blob({**good, "id": "e3"}, 1)
    accepted = _both_paths([good, fits])
    assert isinstance(accepted, EncodedEvents)
    assert len(accepted.values[1]) + len(accepted.keys[1]) + MESSAGE_OVERHEAD == MESSAGE_MAX_BYTES
    assert _both_paths([good, over]) == [(1, "properties")]
    assert _both_paths([over, good, over]) == [(0, "properties"), (2, "properties")]
    assert _outcome(orjson.dumps(over), Format.JSON) == [(0, "properties")]
    lines = b"\n".join(map(orjson.dumps, [good, over]))
    assert _outcome(lines, Format.NDJSON) == [(1, "properties")]


def test_a_cloudevent_too_large_for_a_kafka_message_is_refused_by_its_data() -> None:
    native = _blob({"id": "e2", "customer": "c1", "meter": "api_calls"}, 1)
    ce = {"specversion": "1.0", "source": "/s", "id": "e2", "subject": "c1", "type": "api_calls"}
    ce["data"] = native["properties"]
    first = {**ce, "id": "e1", "data": {}}
    for fmt, body in (
        (Format.CLOUDEVENTS_BATCH, orjson.dumps([first, ce])),
        (Format.CLOUDEVENT, orjson.dumps(ce)),
    ):
        index = 1 if fmt is Format.CLOUDEVENTS_BATCH else 0
        assert _outcome(body, fmt) == [(index, "data")]


def test_the_reserved_property_is_refused_by_name_on_every_path() -> None:
    good = {"id": "e1", "customer": "c1", "meter": "api_calls"}
    posing = {**good, "id": "e2", "properties": {RESERVATION_PROPERTY: True, "model": "x"}}
    field = f"properties.{RESERVATION_PROPERTY}"
    assert _both_paths([good, posing]) == [(1, field)]
    assert _outcome(orjson.dumps(posing), Format.JSON) == [(0, field)]
    lines = b"\n".join(map(orjson.dumps, [good, posing, {**posing, "id": "e3", "value": -1}]))
    assert _outcome(lines, Format.NDJSON) == [(1, field), (2, "value"), (2, field)]
    assert validate_typed(orjson.dumps([good, posing]), Format.JSON, 7, RULES, 1000) is None
    ce = {"specversion": "1.0", "source": "/s", "id": "e2", "subject": "c1", "type": "api_calls"}
    ce["data"] = {"value": 2, RESERVATION_PROPERTY: False}
    first = {**ce, "id": "e1", "data": 1}
    cloud = f"data.{RESERVATION_PROPERTY}"
    assert _outcome(orjson.dumps([first, ce]), Format.CLOUDEVENTS_BATCH) == [(1, cloud)]
    assert _outcome(orjson.dumps(ce), Format.CLOUDEVENT) == [(0, cloud)]


sized_events = st.builds(
    lambda event, extra: _blob(event, extra) if extra is not None else event,
    common_events,
    st.none() | st.integers(-3, 3),
)
reserved_events = st.builds(
    lambda event, value: {**event, "properties": {RESERVATION_PROPERTY: value}},
    common_events,
    st.booleans() | st.none() | st.integers(),
)


@settings(max_examples=150)
@given(st.lists(common_events | spoiled_events | sized_events | reserved_events, max_size=4))
def test_a_body_is_judged_alike_by_both_routes(raws: list[Any]) -> None:
    outcome = _both_paths(raws)
    event("accepted" if isinstance(outcome, EncodedEvents) else "refused")


@given(st.lists(common_events, min_size=1, max_size=5))
def test_common_valid_bodies_take_the_typed_route(raws: list[dict[str, object]]) -> None:
    expected = EncodedEvents.of(validate(raw, 7, RULES) for raw in raws)  # type: ignore[misc]
    lines, array = b"\n".join(map(orjson.dumps, raws)), orjson.dumps(raws)
    for body, fmt in ((array, Format.JSON), (lines, Format.NDJSON)):
        assert validate_typed(body, fmt, 7, RULES, 1000) == expected
    one = orjson.dumps(raws[0])
    assert validate_typed(one, Format.JSON, 7, RULES, 1000) == EncodedEvents.of(
        expected.events()[:1]
    )


def _written(value: object, repeat: str | None, spaced: bool, escaped: bool) -> str:
    """`value` as JSON text written by hand: objects with their key `repeat` written twice
    (first with a decoy value), a space before each colon if `spaced`, colons in strings as
    `\\u003a` if `escaped`."""
    colon = " :" if spaced else ":"
    if isinstance(value, dict):
        pairs = [(k, v) for k, v in value.items()]
        if repeat is not None and repeat in value:
            pairs.insert(0, (repeat, "decoy"))
        inner = [
            _written(k, None, spaced, escaped) + colon + _written(v, None, spaced, escaped)
            for k, v in pairs
        ]
        return "{" + ",".join(inner) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_written(v, None, spaced, escaped) for v in value) + "]"
    text = json.dumps(value)
    return text.replace(":", "\\u003a") if escaped and isinstance(value, str) else text


@st.composite
def bodies_with_repeats(draw: st.DrawFn) -> tuple[bytes, set[tuple[int, str]]]:
    """A JSON array of events, some with a key written twice (at the top or in properties),
    and the (index, field) of each repeat: an oracle that shares no code with ingest's."""
    raws = draw(st.lists(common_events | spoiled_events, min_size=1, max_size=4))
    spaced, escaped = draw(st.booleans()), draw(st.booleans())
    texts, repeats = [], set()
    for index, raw in enumerate(raws):
        top = draw(st.none() | st.sampled_from(sorted(raw)))
        props = raw.get("properties")
        inner = (
            draw(st.none() | st.sampled_from(sorted(props)))
            if isinstance(props, dict) and props
            else None
        )
        if inner is not None:
            top = None if top == "properties" else top
            written_props = _written(props, inner, spaced, escaped)
            text = _written(
                {k: v for k, v in raw.items() if k != "properties"}, top, spaced, escaped
            )
            text = (
                text[:-1]
                + ("," if len(raw) > 1 else "")
                + '"properties"'
                + (" :" if spaced else ":")
                + written_props
                + "}"
            )
            repeats.add((index, f"properties.{inner}"))
        else:
            text = _written(raw, top, spaced, escaped)
        if top is not None:
            repeats.add((index, top))
        texts.append(text)
    return ("[" + ",".join(texts) + "]").encode(), repeats


def _repeats_named(
    outcome: EncodedEvents | list[tuple[int | None, str]], body: bytes
) -> set[tuple[int, str]]:
    try:
        validate_body(body, Format.JSON, 7, RULES, {}, 1000)
    except ValidationFailed as exc:
        return {(e.index or 0, e.field) for e in exc.errors if e.message == REPEATED}
    return set()


@settings(max_examples=300)
@given(bodies_with_repeats())
def test_repeated_keys_are_refused_alike_by_both_paths(
    case: tuple[bytes, set[tuple[int, str]]],
) -> None:
    body, repeats = case
    columnar, by_event = _outcome(body, Format.JSON), _outcome(b" " + body, Format.JSON)
    assert columnar == by_event
    if _loads(body) == "not JSON":  # NaN or infinity: the body as a whole is refused
        assert columnar == [(None, "")]
        return
    assert _repeats_named(columnar, body) == repeats
    if repeats:
        assert not isinstance(columnar, EncodedEvents)
    event(
        "repeated" if repeats else "accepted" if isinstance(columnar, EncodedEvents) else "refused"
    )


CE = {"specversion": "1.0", "source": "/s", "id": "e1", "subject": "c1", "type": "api_calls"}


@pytest.mark.parametrize(
    ("fmt", "body", "expected"),
    [
        (Format.JSON, b'{"id":"a","id":"b","customer":"c","meter":"api_calls"}', [(0, "id")]),
        (
            Format.JSON,
            b'[{"id":"a","customer":"c","meter":"api_calls"},'
            b'{"id":"b","customer":"c","customer":"d","meter":"api_calls"}]',
            [(1, "customer")],
        ),
        (
            Format.JSON,
            b'[{"id":"a","customer":"c","meter":"api_calls","properties":{"m":1,"m":2}},'
            b'{"id":"b","customer":"c","meter":"api_calls"}]',
            [(0, "properties.m")],
        ),
        (
            Format.JSON,
            b'[{"id":"a","customer":"c","meter":"api_calls","properties":{"l":[{"x":1,"\\u0078":2}]}},'
            b'{"id":"b","customer":"c","meter":"api_calls"}]',
            [(0, "properties.l.0.x")],
        ),
        (
            Format.JSON,
            b'[{"id":"a","customer":"c","meter":"api_calls"},'
            b'{"id":"b","customer":"c","meter":"api_calls","\\u0069d":"\\u003a"}]',
            [(1, "id")],
        ),
        (
            Format.NDJSON,
            b'{"id":"a","customer":"c","meter":"api_calls"}\n'
            b'{"id":"b","customer":"c","meter":"api_calls","value":1,"value":2}',
            [(1, "value")],
        ),
        (Format.CLOUDEVENT, orjson.dumps(CE)[:-1] + b',"subject":"c2"}', [(0, "subject")]),
        (
            Format.CLOUDEVENTS_BATCH,
            b"["
            + orjson.dumps(CE)
            + b","
            + orjson.dumps({**CE, "id": "e2"})[:-1]
            + b',"data":{"value":1,"value":5}}]',
            [(1, "data.value")],
        ),
    ],
)
def test_a_repeated_key_is_refused_by_index_and_field_in_every_format(
    fmt: Format, body: bytes, expected: list[tuple[int, str]]
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        validate_body(body, fmt, 7, RULES, {}, 1000)
    assert [(e.index, e.field) for e in refused.value.errors if e.message == REPEATED] == expected


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (b'"properties":{"n":18446744073709551616}', "properties"),
        (b'"properties":{"n":9223372036854775808}', "properties"),
        (b'"properties":{"n":[-9223372036854775809]}', "properties"),
        (b'"timestamp":"2027-W02-5T08:00:00Z"', "timestamp"),
        (b'"timestamp":"2027-01-15T08:00:00+0100"', "timestamp"),
        (b'"id2":1', "id2"),
    ],
)
def test_strict_values_in_a_body_are_refused_alike_by_both_paths(text: bytes, field: str) -> None:
    good = b'{"id":"e1","customer":"c","meter":"api_calls"}'
    bad = b'{"id":"e2","customer":"c","meter":"api_calls",%s}' % text
    array = b"[%s,%s]" % (good, bad)
    assert _outcome(array, Format.JSON) == _outcome(b" " + array, Format.JSON) == [(1, field)]
    assert _outcome(bad, Format.JSON) == [(0, field)]
    assert _outcome(b"%s\n%s" % (good, bad), Format.NDJSON) == [(1, field)]


@pytest.mark.parametrize(
    ("fmt", "body", "expected"),
    [
        (
            Format.JSON,
            b'[{"id":"a"},{"id":"b","properties":{"x":[1,-1e400]}}]',
            [(1, "properties.x.1")],
        ),
        (
            Format.JSON,
            b'{"id":"a","customer":"c","meter":"api_calls","value":1e999}',
            [(0, "value")],
        ),
        (
            Format.NDJSON,
            b'{"id":"a"}\n{"properties":{"n":' + b"9" * 4301 + b"}}",
            [(1, "properties.n")],
        ),
        (Format.CLOUDEVENTS_BATCH, b'[{"id":"a"},{"data":{"v":1e400}}]', [(1, "data.v")]),
    ],
)
def test_numbers_no_decoder_reads_are_refused_by_index_and_field(
    fmt: Format, body: bytes, expected: list[tuple[int, str]]
) -> None:
    assert _outcome(body, fmt) == expected
    if fmt is Format.JSON:
        assert _outcome(b" " + body, fmt) == expected


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\u0085", "\u200b", "\u202e", "\ufeff"])
def test_separators_and_invisible_characters_in_ids_are_refused_by_both_paths(char: str) -> None:
    good = {"id": "e1", "customer": "c", "meter": "api_calls"}
    assert _both_paths([good, {**good, "id": f"e{char}2"}]) == [(1, "id")]
    assert _both_paths([good, {**good, "id": "e2", "customer": char}]) == [(1, "customer")]
    ce = {**CE, "subject": f"c{char}"}
    assert _outcome(orjson.dumps(ce), Format.CLOUDEVENT) == [(0, "subject")]


def test_packed_dedupe_calls_keep_each_answer_in_place(redis_url: str) -> None:
    async def scenario() -> None:
        d = RedisDeduper(connect_async(redis_url), f"fp{uuid.uuid4().hex[:6]}", 60)
        odd = ["", "a b", "é", "x" * 128, "tab\tin", "{1}:y", "last"]
        await d.mark(1, odd[1::2])
        assert await d.seen(1, odd) == [i % 2 == 1 or None for i in range(len(odd))]
        many = [f"m-{i}" for i in range(1000)]
        await d.mark(1, many[::3])
        assert await d.seen(1, many) == [i % 3 == 0 or None for i in range(1000)]
        assert await d.seen(2, many[:3]) == [None] * 3  # a store in its first window
        with pytest.raises(ValueError):
            await d.seen(1, ["a\nb"])
        await d.close()

    asyncio.run(scenario())


@pytest.fixture
def both() -> Iterator[tuple[TestClient, TestClient, dict[str, str]]]:
    """The FastAPI app and the server, each on its own sink (rate 100 events/s) and the same
    in-memory keys and catalog; and the Authorization header of each scope's key."""
    tenants, catalogs = MemoryTenantRepository(), MemoryCatalogRepository()
    acme = tenants.create_tenant("acme")
    catalogs.apply(acme.id, parse_catalog(CATALOG))
    keys = {s: tenants.create_key("acme", [s])[1] for s in ("ingest", "read")}

    def deps() -> Dependencies:
        return Dependencies(
            keys=KeyCache(tenants, "ingest"),
            meters=MeterCache(catalogs),
            sink=RateLimitedSink(MemorySink(), TokenBuckets(100.0, {})),
            max_body_bytes=32768,
        )

    with TestClient(create_app(deps())) as app, TestClient(create_server(deps())) as server:
        yield app, server, {s: f"Bearer {k}" for s, k in keys.items()}


def _event(i: int, **extra: object) -> dict[str, object]:
    return {"id": f"e-{i}", "customer": "c", "meter": "api_calls", **extra}


def test_the_bare_handler_answers_as_the_fastapi_route(
    both: tuple[TestClient, TestClient, dict[str, str]],
) -> None:
    app, server, auth = both
    json = "application/json"
    cases: list[tuple[int, str | None, str, bytes]] = [
        (202, auth["ingest"], json, orjson.dumps(_event(1))),
        (
            202,
            auth["ingest"],
            "application/x-ndjson",
            b'{"id":"n","customer":"c","meter":"tokens"}',
        ),
        (401, None, json, b"{}"),
        (401, "Basic x", json, b"{}"),
        (403, auth["read"], json, b"{}"),
        (415, auth["ingest"], "text/plain", b"{}"),
        (413, auth["ingest"], json, b"[" + b" " * 40_000 + b"]"),
        (413, auth["ingest"], json, b"[" + b",".join([b"{}"] * 1001) + b"]"),
        (422, auth["ingest"], json, b"{not json"),
        (422, auth["ingest"], json, orjson.dumps([_event(1, value=-1), "x", _event(2, extra=1)])),
        (202, auth["ingest"], json, orjson.dumps([_event(i) for i in range(600)])),  # into debt
        (429, auth["ingest"], json, orjson.dumps(_event(9))),
    ]
    for status, key, ctype, body in cases:
        headers = {"Content-Type": ctype} | ({"Authorization": key} if key else {})
        first, second = (c.post("/v1/events", content=body, headers=headers) for c in (app, server))
        assert (first.status_code, first.content) == (status, second.content), second.text
        assert second.status_code == status
        assert (
            ("retry-after" in first.headers) == ("retry-after" in second.headers) == (status == 429)
        )
        assert second.headers["content-type"] == "application/json"
    assert [c.get("/healthz").status_code for c in (app, server)] == [200, 200]
    assert server.get("/v1/events").status_code == 405


def test_the_server_counts_its_requests_by_status(
    both: tuple[TestClient, TestClient, dict[str, str]],
) -> None:
    _, server, auth = both
    server.post("/v1/events", json=_event(1), headers={"Authorization": auth["ingest"]})
    server.post("/v1/events", json=_event(2))
    metrics = server.get("/metrics").text
    assert 'meterline_ingest_requests_total{status="202"} 1.0' in metrics
    assert 'meterline_ingest_requests_total{status="401"} 1.0' in metrics
    assert "meterline_ingest_request_seconds_count 2.0" in metrics
