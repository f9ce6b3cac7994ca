"""A request's body validated as one batch: all valid, or every problem at once.

Beyond the event's own rules (`validate_event`), ingest refuses three things, on every path:
- a key repeated within one JSON object, at any depth (`repeated_keys`): JSON decoders keep the
  last one, so what was counted could differ from what another reader of the same body sees;
- the property `RESERVATION_PROPERTY`, which marks the events an entitlement consume publishes:
  an ingest event carrying it could pose as a consume's reservation;
- an event whose Kafka message would exceed `MESSAGE_MAX_BYTES` (the producer's own limit):
  librdkafka refuses such a message when it is produced, after the batch's other events may
  already be on their way, so it is refused here, before anything of its request is produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.body import Format, decode, repeated_keys
from ingest.cloudevents import rename, to_native
from ingest.columns import Native, accept_columns, from_json, from_ndjson, from_values
from meterline.errors import FieldError, ValidationFailed
from meterline.events import (
    MAX_ID_LEN,
    RESERVATION_PROPERTY,
    EncodedEvents,
    Rules,
    UsageEvent,
    validate_event,
)
from meterline.kafka.config import MESSAGE_MAX_BYTES, MESSAGE_OVERHEAD

COLUMNS_FROM = 2
"""Batches of at least this many events are checked as columns first: from two events on, the
columns cost less than event by event (figures: ingest/README.md)."""
VALUE_ROOM = MESSAGE_MAX_BYTES - MESSAGE_OVERHEAD - len(f"{2**63}/") - 4 * MAX_ID_LEN
"""Every Kafka value up to this long fits in a message, whatever its key (a tenant id and a
customer of at most 128 characters): one length per event, checked on bytes already built."""


def validate_body(
    body: bytes,
    fmt: Format,
    tenant_id: int,
    rules: Rules,
    value_properties: Mapping[str, str],
    max_events: int,
) -> EncodedEvents:
    """The body's events, normalized and encoded for Kafka; or ValidationFailed listing every
    bad field of every event, PayloadTooLarge for more than `max_events` events.

    A native batch of `COLUMNS_FROM` events or more is decoded and checked as columns first
    (ingest/columns.py); anything else, or a batch that path does not take, is decoded again
    (ingest/body.py), its repeated keys looked for, and checked event by event. Each error
    carries the event's index in the request (0 for a single event). CloudEvents errors name
    the CloudEvents attribute (`subject`, `type`, `time`, `data`); a repeated key is named by
    its path in the CloudEvent as sent.
    """
    cloud = fmt.is_cloudevents
    fast = _columnar(_typed(body, fmt), tenant_id, rules, max_events, body)
    if fast is not None:
        return _fitting(fast, cloud)
    values, _ = decode(body, fmt, max_events)
    repeated = repeated_keys(body, fmt, values)
    natives = values
    if cloud:
        natives = [to_native(raw, value_properties, i) for i, raw in enumerate(values)]
        if len(natives) >= COLUMNS_FROM and not repeated:
            fast = _columnar(from_values(natives), tenant_id, rules, max_events)
            if fast is not None:
                return _fitting(fast, cloud)
    events: list[UsageEvent] = []
    errors: list[FieldError] = []
    for index, raw in enumerate(natives):
        if cloud and isinstance(raw, list):  # the CloudEvent's envelope was already refused
            errors.extend(raw)
            continue
        result = validate_event(raw, tenant_id, rules, index)
        problems = _reserved(raw, index, cloud) if isinstance(raw, dict) else []
        if isinstance(result, UsageEvent):
            events.append(result)
        else:
            problems = result + problems
        errors.extend(rename(problems) if cloud else problems)
    if repeated:
        errors = sorted(repeated + errors, key=_index)
    if errors:
        raise ValidationFailed(errors)
    return _fitting(EncodedEvents.of(events), cloud)


def _index(error: FieldError) -> int:
    return error.index or 0


def _reserved(raw: dict[str, Any], index: int, cloud: bool) -> list[FieldError]:
    """The reserved property's error, named as the client sent it (in a CloudEvent's `data`)."""
    props = raw.get("properties")
    if isinstance(props, dict) and RESERVATION_PROPERTY in props:
        field = f"{'data' if cloud else 'properties'}.{RESERVATION_PROPERTY}"
        return [FieldError(field, "reserved for the events of entitlement consumes", index)]
    return []


def _fitting(events: EncodedEvents, cloud: bool) -> EncodedEvents:
    """`events`, or ValidationFailed naming each one too large for a Kafka message (only its
    properties can make it so: every other field is short)."""
    values = events.values
    if max(map(len, values)) <= VALUE_ROOM:
        return events
    sizes = [len(v) + len(k) + MESSAGE_OVERHEAD for v, k in zip(values, events.keys, strict=True)]
    field = "data" if cloud else "properties"
    message = "the event takes {} bytes as a Kafka message; at most {} fit: send less in " + field
    errors = [
        FieldError(field, message.format(size, MESSAGE_MAX_BYTES), index)
        for index, size in enumerate(sizes)
        if size > MESSAGE_MAX_BYTES
    ]
    if errors:
        raise ValidationFailed(errors)
    return events


def _typed(body: bytes, fmt: Format) -> list[Native] | None:
    """The body as `Native`s when it is a native batch msgspec takes (a JSON array must start
    with its bracket: one with leading whitespace is decoded the slow way, still correctly)."""
    if fmt is Format.JSON and body[:1] == b"[":
        return from_json(body)
    if fmt is Format.NDJSON and body.count(b"\n") >= COLUMNS_FROM - 1:
        return from_ndjson(body)
    return None


def _columnar(
    natives: list[Native] | None,
    tenant_id: int,
    rules: Rules,
    max_events: int,
    source: bytes | None = None,
) -> EncodedEvents | None:
    if natives is None or not COLUMNS_FROM <= len(natives) <= max_events:
        return None
    return accept_columns(natives, tenant_id, rules, source)
