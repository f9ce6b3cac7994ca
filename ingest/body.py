"""Reading a request body within its size limit, and decoding it into raw events by media type.

Media types: `application/json` (one event or an array), `application/x-ndjson` (one event per
line), `application/cloudevents+json` and `application/cloudevents-batch+json`. Decoding only
splits the body into JSON values; CloudEvents are mapped to native events later, once the
tenant's catalog (their `value_property`) is known.

msgspec decodes: it reads integers exactly, however long (orjson turns those past 64 bits into
floats, which no later check could tell from a float), so `validate_event` can refuse them by
name. Like every fast decoder it keeps the last of a repeated key; `repeated_keys` finds them.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import orjson

from meterline.errors import (
    FieldError,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)


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
