"""A request's body validated as one batch: all valid, or every problem at once.

The path of a body, in order:
1. decode (ingest/body.py): a native body straight into columns (`typed_events`), else, or when
   those columns hold a problem or may have lost a repeated key, into plain JSON values
   (`decode`), CloudEvents mapped to native events (ingest/cloudevents.py);
2. check: the event rules of the kernel, one implementation (`meterline.events.check_events`),
   give the events normalized or every problem of every event;
3. encode: every Kafka value written at once (`meterline.events.encode_events`);
4. the two things ingest refuses beyond the event rules:
   - a key repeated within one JSON object, at any depth (`repeated_keys`): JSON decoders keep
     the last one, so what was counted could differ from what another reader of the same body
     sees;
   - an event whose Kafka message would exceed `MESSAGE_MAX_BYTES` (the producer's own limit):
     librdkafka refuses such a message when it is produced, after the batch's other events may
     already be on their way, so it is refused here, before anything of its request is produced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ingest.body import Format, decode, repeated_keys, typed_events, typed_keys_all_kept
from ingest.cloudevents import rename, to_native
from meterline.errors import FieldError, ValidationFailed
from meterline.events import (
    MAX_ID_LEN,
    EncodedEvents,
    Rules,
    check_events,
    encode_events,
    sent_events,
)
from meterline.kafka.config import MESSAGE_MAX_BYTES, MESSAGE_OVERHEAD

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

    Each error carries the event's index in the request (0 for a single event). CloudEvents
    errors name the CloudEvents attribute (`subject`, `type`, `time`, `data`); a repeated key is
    named by its path in the event as sent.
    """
    encoded = validate_typed(body, fmt, tenant_id, rules, max_events)
    if encoded is None:
        encoded = validate_values(body, fmt, tenant_id, rules, value_properties, max_events)
    return _fitting(encoded, fmt.is_cloudevents)


def validate_typed(
    body: bytes, fmt: Format, tenant_id: int, rules: Rules, max_events: int
) -> EncodedEvents | None:
    """A native body's events through msgspec's structs, when it is valid and they held every
    key; else None (`validate_values` then reads it again)."""
    typed = typed_events(body, fmt, max_events)
    if typed is None:
        return None
    checked = check_events(typed.sent, rules)
    if isinstance(checked, list):
        return None
    encoded = encode_events(checked, tenant_id, rules.now_ms)
    return encoded if typed_keys_all_kept(body, typed, encoded) else None


def validate_values(
    body: bytes,
    fmt: Format,
    tenant_id: int,
    rules: Rules,
    value_properties: Mapping[str, str],
    max_events: int,
) -> EncodedEvents:
    """The body decoded into plain JSON values, which name every problem."""
    values, _ = decode(body, fmt, max_events)
    errors = repeated_keys(body, fmt, values)
    index: Sequence[int] = range(len(values))
    if fmt.is_cloudevents:
        values, index, envelopes = _natives(values, value_properties)
        errors += envelopes
    sent, problems = sent_events(values, index)
    checked = check_events(sent, rules)
    if isinstance(checked, list):
        problems += checked
    errors += rename(problems) if fmt.is_cloudevents else problems
    if errors:
        raise ValidationFailed(sorted(errors, key=_index))  # stable: in order within an event
    assert not isinstance(checked, list)
    return encode_events(checked, tenant_id, rules.now_ms)


def _natives(
    cloudevents: list[Any], value_properties: Mapping[str, str]
) -> tuple[list[Any], list[int], list[FieldError]]:
    """The native events of CloudEvents, their indexes, and the problems of the envelopes."""
    natives: list[Any] = []
    index: list[int] = []
    envelopes: list[FieldError] = []
    for i, raw in enumerate(cloudevents):
        native = to_native(raw, value_properties, i)
        if isinstance(native, list):
            envelopes += native
        else:
            natives.append(native)
            index.append(i)
    return natives, index, envelopes


def _index(error: FieldError) -> int:
    return error.index or 0


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
