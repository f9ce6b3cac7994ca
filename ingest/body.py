"""Reading a request body within its size limit, and decoding it into raw events by media type.

Media types: `application/json` (one event or an array), `application/x-ndjson` (one event per
line), `application/cloudevents+json` and `application/cloudevents-batch+json`. Decoding only
splits the body into JSON values; CloudEvents are mapped to native events later, once the
tenant's catalog (their `value_property`) is known.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from typing import Any

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


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed([FieldError("", f"the body is not valid JSON: {exc}")]) from None


def _ndjson(body: bytes) -> list[Any]:
    values: list[Any] = []
    errors: list[FieldError] = []
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        try:
            values.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            errors.append(FieldError("", f"line is not valid JSON: {exc}", len(values)))
            values.append(None)
    if errors:
        raise ValidationFailed(errors)
    return values
