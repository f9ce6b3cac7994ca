"""A request's raw events validated as one batch: all valid, or every problem at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ingest.body import Format
from ingest.cloudevents import rename, to_native
from meterline.errors import FieldError, ValidationFailed
from meterline.events import Rules, UsageEvent, validate_event


def validate_batch(
    values: Sequence[object],
    fmt: Format,
    tenant_id: int,
    rules: Rules,
    value_properties: Mapping[str, str],
) -> list[UsageEvent]:
    """The normalized events, or ValidationFailed listing every bad field of every event.

    Each error carries the event's index in the request (0 for a single event). CloudEvents
    errors name the CloudEvents attribute (`subject`, `type`, `time`, `data`).
    """
    events: list[UsageEvent] = []
    errors: list[FieldError] = []
    cloud = fmt.is_cloudevents
    for index, raw in enumerate(values):
        if cloud:
            mapped = to_native(raw, value_properties, index)
            if isinstance(mapped, list):
                errors.extend(mapped)
                continue
            raw = mapped
        result = validate_event(raw, tenant_id, rules, index)
        if isinstance(result, UsageEvent):
            events.append(result)
        else:
            errors.extend(rename(result) if cloud else result)
    if errors:
        raise ValidationFailed(errors)
    return events
