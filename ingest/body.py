"""Reading a request body within its size limit, and decoding it into events by media type.

Media types: `application/json` (one event or an array), `application/x-ndjson` (one event per
line), `application/cloudevents+json` and `application/cloudevents-batch+json`.

Two decoders, both msgspec (it reads integers exactly, however long: orjson turns those past 64
bits into floats, which no later check could tell from a float, so the rules can refuse them by
name):
- `typed_events`: a native body straight into `Native` structs and from them into columns
  (`SentEvents`), without a dict per event: the common case, and the cheapest;
- `decode`: any body into plain JSON values, which can hold anything a client sends, so the
  rules can name every problem; CloudEvents are mapped to native events afterwards, once the
  tenant's catalog (their `value_property`) is known.
Like every fast decoder msgspec keeps the last of a repeated key. `repeated_keys` finds them in
plain values; `typed_keys_all_kept` tells, by counting, whether the structs kept every key.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import AsyncIterator
from itertools import repeat
from typing import Annotated, Any

import msgspec
import orjson
from msgspec.structs import astuple

from meterline.errors import (
    FieldError,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from meterline.events import EVENT_FIELDS, MAX_ID_LEN, MAX_PROPERTIES, EncodedEvents, SentEvents
from meterline.events.wire import WRITTEN_ALWAYS
from meterline.values import MAX_VALUE


class Format(enum.Enum):
    JSON = "application/json"
    NDJSON = "application/x-ndjson"
    CLOUDEVENT = "application/cloudevents+json"
    CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"

    @property
    def is_cloudevents(self) -> bool:
        return self in (Format.CLOUDEVENT, Format.CLOUDEVENTS_BATCH)


_ALIASES = {
    "application/ndjson": Format.NDJSON,
    "application/jsonl": Format.NDJSON,
    "application/x-jsonlines": Format.NDJSON,
}
_BY_NAME = {f.value: f for f in Format} | _ALIASES


def body_format(content_type: str | None) -> Format:
    """The format named by a Content-Type header (parameters such as charset are ignored)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    found = _BY_NAME.get(media)
    if found is None:
        shown = f"{media!r}" if media else "no Content-Type"
        raise UnsupportedMediaType(
            f"{shown} is not accepted; send one of " + ", ".join(f.value for f in Format)
        )
    return found


async def read_limited(
    chunks: AsyncIterator[bytes], limit: int, content_length: str | None = None
) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it (or its declared length) passes `limit`.

    Reading stops at the first chunk past the limit, so an oversized body is never buffered.
    """
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(_too_large(limit))
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(limit))
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _too_large(limit: int) -> str:
    return f"the body is larger than {limit} bytes; split it into smaller batches"


def decode(body: bytes, fmt: Format, max_events: int) -> tuple[list[Any], bool]:
    """The raw JSON values of the body and whether it was a batch (vs one event).

    Raises ValidationFailed for malformed JSON (NDJSON: every bad line, by index) and
    PayloadTooLarge for more than `max_events` events.
    """
    if fmt is Format.NDJSON:
        values, batch = _ndjson(body), True
    else:
        doc = _json(body)
        batch = isinstance(doc, list)
        if fmt is Format.CLOUDEVENTS_BATCH and not batch:
            raise ValidationFailed([FieldError("", "a CloudEvents batch must be a JSON array")])
        values = doc if batch else [doc]
    if batch and not values:
        raise ValidationFailed([FieldError("", "the batch is empty")])
    if len(values) > max_events:
        raise PayloadTooLarge(f"{len(values)} events; a batch holds at most {max_events}")
    return values, batch


_DECODER = msgspec.json.Decoder()
_NOT_JSON = (msgspec.DecodeError, orjson.JSONDecodeError)


def _loads(text: bytes) -> Any:
    """`text` decoded; orjson reads what msgspec cannot (nested ~1,000 levels deep: such an
    event is refused by `validate_event`, and with it the whole batch)."""
    try:
        return _DECODER.decode(text)
    except RecursionError:
        return orjson.loads(text)


def _json(body: bytes) -> Any:
    try:
        return _loads(body)
    except _NOT_JSON as exc:
        errors = _out_of_range(body, None) or [FieldError("", f"the body is not valid JSON: {exc}")]
        raise ValidationFailed(errors) from None


def _ndjson(body: bytes) -> list[Any]:
    values: list[Any] = []
    errors: list[FieldError] = []
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        try:
            values.append(_loads(line))
        except _NOT_JSON as exc:
            index = len(values)
            errors += _out_of_range(line, index) or [
                FieldError("", f"line is not valid JSON: {exc}", index)
            ]
            values.append(None)
    if errors:
        raise ValidationFailed(errors)
    return values


OUT_OF_RANGE = (
    "a number out of range: past a double's (±1.8e308), or an integer of over 4,300 digits"
)
_TOO_LONG = object()


def _out_of_range(text: bytes, index: int | None) -> list[FieldError]:
    """Each number of `text` that no decoder here reads (`1e400`, an integer of thousands of
    digits), by event index and path; [] when `text` is not JSON for another reason. Both
    decoders refuse the whole body for them, naming neither the event nor the field; the
    standard library reads them (as infinity, or through `parse_int`) and so can say where."""
    try:
        doc = json.loads(text, parse_int=_integer, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return []
    if index is None and isinstance(doc, list):
        found = [(i, path) for i, event in enumerate(doc) for path in _unreadable(event)]
    else:
        found = [(index or 0, path) for path in _unreadable(doc)]
    return [FieldError(path, OUT_OF_RANGE, i) for i, path in found]


def _integer(digits: str) -> object:
    return _TOO_LONG if len(digits.lstrip("-")) > 4300 else int(digits)  # msgspec's limit


def _not_json(constant: str) -> None:
    raise ValueError(constant)  # NaN and Infinity are no JSON


def _unreadable(doc: object) -> list[str]:
    paths: list[str] = []
    stack: list[tuple[str, object]] = [("", doc)]
    while stack:
        path, value = stack.pop()
        prefix = f"{path}." if path else ""
        if isinstance(value, dict):
            stack.extend((prefix + k, v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{prefix}{i}", v) for i, v in reversed(list(enumerate(value))))
        elif value is _TOO_LONG or (isinstance(value, float) and not math.isfinite(value)):
            paths.append(path)
    return paths


BACKSLASH = ord("\\")
"""As an int: `BACKSLASH in body` is a memchr, ~5x cheaper than `b"\\" in body` on a small body."""
_TOO_DEEP = "nested too deeply to check for repeated keys"
REPEATED = "a repeated key: a JSON object must not repeat a key (which one counts is undefined)"


def repeated_keys(body: bytes, fmt: Format, values: list[Any]) -> list[FieldError]:
    """Every key repeated within one object of the body, by event index and path (`id`,
    `properties.model`, `data.items.0.sku`); `values` are the body's events as `decode` gave
    them. Both decoders keep the last of a repeated key, so a cheap count comes first: every key
    is followed by one colon and the only other colons are inside strings, so when no escape can
    have written a colon (`\\u003a`), the body's colons and those of its values re-encoded are
    as many exactly when no key was dropped. Only a body that fails that is read again, with the
    standard library's decoder, which sees every key."""
    if keys_all_kept(body, values):
        return []
    try:
        raws = _events_raw(body, fmt)
    except RecursionError:
        return [FieldError("", _TOO_DEEP)]
    return [error for index, raw in enumerate(raws) for error in _repeated_in(raw, index)]


def keys_all_kept(body: bytes, values: object) -> bool:
    """Whether `values`, decoded from `body`, certainly kept every key of it (see
    `repeated_keys`); False when that cannot be told cheaply."""
    if BACKSLASH in body and b"\\u003" in body:
        return False
    try:
        written = orjson.dumps(values)
    except TypeError:  # an integer past 64 bits, nesting orjson does not write: read again
        return False
    return body.count(b":") == written.count(b":")


def _events_raw(body: bytes, fmt: Format) -> list[bytes]:
    """Each event's own JSON text (one per line, or per element of an array)."""
    if fmt is Format.NDJSON:
        return [line for line in body.split(b"\n") if line.strip()]
    try:
        return [bytes(r) for r in msgspec.json.decode(body, type=list[msgspec.Raw])]
    except msgspec.DecodeError:
        return [body]


def _repeated_in(raw: bytes, index: int) -> list[FieldError]:
    try:
        doc = json.loads(raw, object_pairs_hook=_Pairs.of)
    except RecursionError:
        return [FieldError("", _TOO_DEEP, index)]
    errors: list[FieldError] = []
    stack: list[tuple[str, object]] = [("", doc)]
    while stack:
        path, value = stack.pop()
        prefix = f"{path}." if path else ""
        if isinstance(value, _Pairs):
            errors += [FieldError(prefix + k, REPEATED, index) for k in value.repeated]
        if isinstance(value, dict):
            stack.extend((prefix + k, v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{prefix}{i}", v) for i, v in reversed(list(enumerate(value))))
    return errors


class _Pairs(dict[str, Any]):
    """A decoded object that repeated keys (`repeated`, each once, in order)."""

    repeated: list[str]

    @staticmethod
    def of(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        doc = dict(pairs)
        if len(doc) == len(pairs):
            return doc
        seen: set[str] = set()
        repeated: dict[str, None] = {}
        for key, _ in pairs:
            if key in seen:
                repeated[key] = None
            seen.add(key)
        out = _Pairs(doc)
        out.repeated = list(repeated)
        return out


ABSENT_VALUE = -1.0
"""`Native.value` where the event has none (a value sent is never negative; msgspec's `UNSET`
would say so too, at a higher decoding cost)."""
_TEXT = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]


class Native(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A native event as msgspec decodes it: each field's JSON type and bounds
    (`meterline.events.model.TYPED`), checked in C as it decodes; the rules check the rest. An
    absent or null timestamp or properties read as None."""

    id: _TEXT
    customer: _TEXT
    meter: str
    value: Annotated[float, msgspec.Meta(ge=0, le=MAX_VALUE)] = ABSENT_VALUE
    timestamp: int | str | None = None
    properties: Annotated[dict[str, Any], msgspec.Meta(max_length=MAX_PROPERTIES)] | None = None


assert Native.__struct_fields__ == EVENT_FIELDS, "columns come out in the fields' order"
_BATCH = msgspec.json.Decoder(list[Native])
_NONE = type(None)
_ONE = msgspec.json.Decoder(Native)


class TypedEvents(msgspec.Struct, gc=False):
    """A native body's events as columns, and the colons its text holds besides those their
    Kafka values will hold: one per key present, and those of timestamps written as text."""

    sent: SentEvents
    colons: int


def typed_events(body: bytes, fmt: Format, max_events: int) -> TypedEvents | None:
    """A native body's events, decoded into `Native` structs; None for a body they cannot
    hold (a field of another JSON type, an unknown field, a null value, a CloudEvent, JSON
    with whitespace before it, too many events: `decode` then reads it)."""
    natives = _natives(body, fmt)
    if natives is None or not 1 <= len(natives) <= max_events:
        return None
    n = len(natives)
    ids, customers, meters, values, stamps, props = map(
        list, zip(*map(astuple, natives), strict=True)
    )
    kinds = set(map(type, stamps))
    given_stamps = n if _NONE not in kinds else 0 if len(kinds) == 1 else n - stamps.count(None)
    absent = values.count(ABSENT_VALUE)
    keys = 3 * n + n - absent + given_stamps + n - props.count(None)
    if str in kinds:
        keys += _colons("".join([v for v in stamps if v.__class__ is str]))
    if absent:
        values = [1.0 if v == ABSENT_VALUE else v for v in values]
    sent = SentEvents(ids, customers, meters, values, stamps, props, range(n), typed=True)
    return TypedEvents(sent, keys)


def _natives(body: bytes, fmt: Format) -> list[Native] | None:
    try:
        if fmt is Format.JSON and body[:1] == b"[":
            return _BATCH.decode(body)
        if fmt is Format.JSON and body[:1] == b"{":
            return [_ONE.decode(body)]
        if fmt is Format.NDJSON:
            return [_ONE.decode(line) for line in body.split(b"\n") if line.strip()]
    except (msgspec.DecodeError, RecursionError):  # properties nested ~1,000 levels deep
        return None
    return None


def typed_keys_all_kept(body: bytes, typed: TypedEvents, encoded: EncodedEvents) -> bool:
    """Whether the structs of `typed` held every key of `body`, now that their events are
    encoded. Every key in the body is followed by one colon and the only other colons are
    inside strings: so the body's colons are one per key present and those of its strings
    (`typed.colons` counts those of the keys and timestamps; those of ids, customers and meters
    are counted here, with those of the properties as the Kafka values hold them), exactly when
    no key was dropped. False when that cannot be told (`\\u003a`, a colon written as an escape):
    `repeated_keys` then reads the body."""
    if BACKSLASH in body and b"\\u003" in body:
        return False
    sent = typed.sent
    props = sent.properties
    if any(props):  # those of properties: the values' colons less all the others
        with_properties = len(props) - props.count(None) - props.count({})
        written = sum(map(bytes.count, encoded.values, repeat(b":")))
        texts = written - len(WRITTEN_ALWAYS) * len(props) - with_properties
    else:
        texts = sum(_colons("".join(column)) for column in (sent.id, sent.customer, sent.meter))
    return body.count(b":") == typed.colons + texts


def _colons(text: str) -> int:
    return text.count(":") if ":" in text else 0  # `in` is a memchr, `count` a loop
