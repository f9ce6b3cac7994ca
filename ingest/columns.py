"""A batch's events checked and encoded as columns: ingest's hot path for a valid batch.

Event by event, `validate_event` and `encode_event` cost ~4 µs (a dict from the JSON, an object,
a dict and an orjson call each). Here msgspec decodes a JSON array (or each NDJSON line) straight
into `Native` structs and checks each field's type, length and bounds as it goes, in C; the
rules left (printable text, known meters, the time window, properties that orjson can write) take
one builtin call per rule and column; and each Kafka value is written with one string format,
byte for byte what `encode_event` writes (its cost: ingest/README.md).

It accepts only batches whose every event `validate_event` accepts, and writes them byte for byte
as `encode_event` would. For any other batch it returns None: a bad event, one that ingest
refuses beyond `validate_event` (a repeated key, the reserved property: ingest/validation.py),
and also a few valid ones it leaves to the slow path (text with a non-printable character, an
integer past 53 bits in properties, a colon written as an escape, an explicit null timestamp or
properties, a body msgspec refuses). The
caller then decodes again and checks event by event, which names every problem.
tests/ingest/test_fast_paths.py holds the two paths to that.

msgspec keeps the last of a repeated key, so a body's keys are counted as ingest/body.py's
`repeated_keys` does, from what is at hand: the raw colons (one per key, plus those inside
strings) against the keys the structs hold (`ABSENT_VALUE`, or None, where a field was absent)
and the colons of their text, of the timestamps and of the properties as written for Kafka.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from itertools import repeat
from typing import Annotated, Any, cast

import msgspec
import orjson

from ingest.body import BACKSLASH
from meterline.events import (
    MAX_ID_LEN,
    MAX_PROPERTIES,
    RESERVATION_PROPERTY,
    RFC3339_DATE_TIME,
    SCHEMA_VERSION,
    EncodedEvents,
    Rules,
    rfc3339_ms,
)
from meterline.values import MAX_VALUE, fits

ABSENT_VALUE = -1.0
"""`Native.value` when the event has none (a value sent is never negative): the key count needs
to know. (msgspec's `UNSET` would say so too, at a higher decoding cost: ingest/README.md.)"""
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]


class Native(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A native event as far as its types and bounds go (what msgspec checks while decoding)."""

    id: Text
    customer: Text
    meter: str
    value: Annotated[float, msgspec.Meta(ge=0, le=MAX_VALUE)] = ABSENT_VALUE
    timestamp: int | str | None = None
    properties: Annotated[dict[str, Any], msgspec.Meta(max_length=MAX_PROPERTIES)] | None = None


_BATCH = msgspec.json.Decoder(list[Native])
_LINE = msgspec.json.Decoder(Native)
_NONE = type(None)
# encode_event's document, fields in its order: `%%` survives the first format (the request's
# constants) as the per-event placeholders; text goes between quotes already escaped.
_TEMPLATE = (
    '{"schema":%d,"tenant":%d,"id":"%%s","customer":"%%s","meter":"%%s","value":%%s,'
    '"timestamp":%%d,"received_at":%d%%s}'
)
# parse_timestamp's bounds on epoch milliseconds, which the window check must keep.
_EPOCH_MS_LIMIT = 10**14
_RFC3339_LINES = re.compile(f"(?:{RFC3339_DATE_TIME}\n)*")
_STRICT = orjson.OPT_STRICT_INTEGER
_FIELDS_ALWAYS_PRESENT = 3  # id, customer, meter


def from_json(body: bytes) -> list[Native] | None:
    """A JSON array body's events, or None if msgspec refuses it (or it is not an array)."""
    try:
        return _BATCH.decode(body)
    except (msgspec.DecodeError, RecursionError):  # properties nested ~1,000 levels deep
        return None


def from_ndjson(body: bytes) -> list[Native] | None:
    """An NDJSON body's events (blank lines skipped), or None if msgspec refuses a line."""
    try:
        return [_LINE.decode(line) for line in body.split(b"\n") if line.strip()]
    except (msgspec.DecodeError, RecursionError):
        return None


def from_values(values: list[Any]) -> list[Native] | None:
    """Decoded events (CloudEvents mapped to native ones) as structs, or None."""
    try:
        return msgspec.convert(values, list[Native])
    except msgspec.ValidationError:
        return None


def accept_columns(
    natives: list[Native], tenant_id: int, rules: Rules, source: bytes | None = None
) -> EncodedEvents | None:
    """The events encoded for Kafka, or None when `validate_event` must look at them one by one
    (see the module docstring). `source`: the JSON text they were decoded from, checked for
    repeated keys (None: checked already)."""
    ids = [e.id for e in natives]
    customers = [e.customer for e in natives]
    meters = [e.meter for e in natives]
    texts = "".join(ids) + "".join(customers)
    distinct_meters = set(meters)
    if not texts.isprintable() or not _known(distinct_meters, rules.meters):
        return None
    stamps_col = [e.timestamp for e in natives]
    kinds = set(map(type, stamps_col))
    written = "\n".join(v for v in stamps_col if v.__class__ is str) if str in kinds else ""
    stamps = _timestamps(stamps_col, kinds, written, rules)
    props = [e.properties for e in natives]
    extras = _extras(props)
    if stamps is None or extras is None:
        return None
    amounts = [e.value for e in natives]
    distinct_amounts = set(amounts)
    if not all(map(fits, distinct_amounts)):  # ABSENT_VALUE (-1.0) fits too
        return None
    if source is not None and not _keys_all_kept(
        source,
        (texts, meters, distinct_meters),
        (amounts, distinct_amounts),
        (stamps_col, kinds, written),
        props,
        extras,
    ):
        return None
    shown = {a: orjson.dumps(1.0 if a < 0 else a or 0.0).decode() for a in distinct_amounts}
    escape = '"' in texts or "\\" in texts
    template = _TEMPLATE % (SCHEMA_VERSION, tenant_id, rules.now_ms)
    rows = zip(
        _inner(ids) if escape else ids,
        _inner(customers) if escape else customers,
        _inner(meters),
        map(shown.__getitem__, amounts),
        stamps,
        extras,
        strict=False,  # `extras` may be endless
    )
    values = list(map(str.encode, map(template.__mod__, rows)))
    keys = list(map(str.encode, map(f"{tenant_id}/".__add__, customers)))
    return EncodedEvents(ids, keys, values)


def _keys_all_kept(
    source: bytes,
    texts: tuple[str, list[str], set[str]],
    amounts: tuple[list[Any], set[Any]],
    stamps: tuple[list[Any], set[type], str],
    props: list[Any],
    extras: Iterable[str],
) -> bool:
    """Whether the structs hold every key of `source` (see the module docstring)."""
    if BACKSLASH in source and b"\\u003" in source:
        return False
    joined, meters, distinct_meters = texts
    keys = len(meters) * _FIELDS_ALWAYS_PRESENT
    keys += _given(*amounts, ABSENT_VALUE) + _given(*stamps[:2], None) + _given(props, None, None)
    colons = _colons(joined)
    colons += sum(meters.count(m) * m.count(":") for m in distinct_meters if ":" in m)
    colons += _colons(stamps[2])
    if isinstance(extras, list):  # `,"properties":{...}` per non-empty properties, else ""
        colons += _colons("".join(extras)) - (len(extras) - extras.count(""))
    return source.count(b":") == keys + colons


def _colons(text: str) -> int:
    return text.count(":") if ":" in text else 0  # `in` is a memchr, `count` a loop


def _given(column: list[Any], distinct: set[Any] | None, absent: object) -> int:
    """How many of `column` are not `absent` (the field's default); `distinct`, the set of the
    column or of its types, when at hand, settles the common cases without a pass. An explicit
    null reads as absent: the count comes out short and the batch goes event by event."""
    if distinct is not None:
        if absent not in distinct and type(absent) not in distinct:
            return len(column)
        if len(distinct) == 1:
            return 0
    return len(column) - column.count(absent)


def _known(names: set[str], known: Container[str]) -> bool:
    return "" not in names and "".join(names).isprintable() and all(map(known.__contains__, names))


def _inner(texts: list[str]) -> list[str]:
    """Each text as orjson writes it between a JSON string's quotes (printable text: only `"`
    and backslash are escaped)."""
    written = {t: orjson.dumps(t).decode()[1:-1] for t in set(texts)}
    return list(map(written.__getitem__, texts))


def _timestamps(
    col: list[int | str | None], kinds: set[type], written: str, rules: Rules
) -> list[int] | None:
    """The events' times in epoch ms (now where absent), or None when one is bad or outside
    the window; `kinds`, the set of their types, `written` the strings among them, one a
    line."""
    now = rules.now_ms
    if kinds == {_NONE}:
        return [now] * len(col)
    if kinds == {int}:
        stamps = cast(list[int], col)
    else:
        if str in kinds and _RFC3339_LINES.fullmatch(written + "\n") is None:
            return None
        parsed = [now if v is None else _ms(v) for v in col]
        if None in parsed:
            return None
        stamps = cast(list[int], parsed)
    low = max(now - rules.lateness_ms, 0)
    high = min(now + rules.future_ms, _EPOCH_MS_LIMIT - 1)
    return stamps if low <= min(stamps) and max(stamps) <= high else None


def _extras(props: list[dict[str, Any] | None]) -> Iterable[str] | None:
    """What follows `received_at` in each value: `,"properties":{...}` for non-empty
    properties (encode_event leaves empty ones out), written at the depth encode_event writes
    them; None if one cannot be written or holds the reserved property."""
    if not any(props):
        return repeat("")
    if any(RESERVATION_PROPERTY in p for p in props if p):
        return None
    try:
        return [
            "," + orjson.dumps({"properties": p}, option=_STRICT).decode()[1:-1] if p else ""
            for p in props
        ]
    except TypeError:  # nested too deeply for orjson to write, or an integer past 53 bits
        return None


def _ms(v: int | str) -> int | None:
    return v if v.__class__ is int else rfc3339_ms(cast(str, v))
