"""CloudEvents (structured mode, spec 1.0) mapped to native usage events.

`id`→id, `subject`→customer, `type`→meter, `time`→timestamp; `data` carries the value under
the meter's `value_property`, else `value`, else the value is 1; the rest of `data` becomes the
event's properties. Other CloudEvents attributes (`source`, extensions) are accepted and not kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from meterline.errors import FieldError

REQUIRED = ("specversion", "id", "source", "type")

NATIVE_TO_CLOUDEVENT = {
    "id": "id",
    "customer": "subject",
    "meter": "type",
    "timestamp": "time",
    "value": "data",
    "properties": "data",
}
"""Error field names: a native field is reported as the CloudEvents attribute it came from."""


def to_native(
    raw: object, value_properties: Mapping[str, str], index: int | None
) -> dict[str, Any] | list[FieldError]:
    """The native event dict of one CloudEvent, or the problems of its envelope."""
    if not isinstance(raw, dict):
        return [FieldError("", "a CloudEvent must be a JSON object", index)]
    errors = [FieldError(a, "required", index) for a in REQUIRED if raw.get(a) in (None, "")]
    if raw.get("specversion") not in (None, "", "1.0"):
        errors.append(FieldError("specversion", "only CloudEvents 1.0 is supported", index))
    if errors:
        return errors
    event: dict[str, Any] = {"id": raw["id"], "customer": raw.get("subject"), "meter": raw["type"]}
    if raw.get("time") is not None:
        event["timestamp"] = raw["time"]
    data = raw.get("data")
    if isinstance(data, dict):
        name = value_properties.get(raw["type"], "value") if isinstance(raw["type"], str) else ""
        _split_data(data, name, event)
    elif isinstance(data, int | float) and not isinstance(data, bool) and math.isfinite(data):
        event["value"] = data
    elif data is not None:
        return [FieldError("data", "must be an object or a number", index)]
    return event


def _split_data(data: dict[str, Any], name: str, event: dict[str, Any]) -> None:
    key = name if name in data else "value" if "value" in data else None
    if key is not None:
        event["value"] = data[key]
    rest = {k: v for k, v in data.items() if k != key}
    if rest:
        event["properties"] = rest


def rename(errors: list[FieldError]) -> list[FieldError]:
    """Errors about native fields, renamed to the CloudEvents attributes the client sent (a
    path inside `properties` to the same path inside `data`)."""
    return [FieldError(_renamed(e.field), e.message, e.index) for e in errors]


def _renamed(field: str) -> str:
    head, dot, rest = field.partition(".")
    return NATIVE_TO_CLOUDEVENT.get(head, head) + dot + rest
