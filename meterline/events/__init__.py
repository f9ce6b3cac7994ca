"""The usage event: what a client may send, and the Kafka message it becomes.

- `model`: the event's limits, the normalized `UsageEvent`, a batch as columns before the rules
  (`SentEvents`) and after them (`ValidEvents`);
- `rules`: the one validation of the ingest contract (`check_events`, `validate_event`), used by
  ingest for every body and by the entitlements consume;
- `wire`: the Kafka message's one definition (`WIRE`) and its codec (`encode_events`,
  `encode_event`, `decode_event`), from which ingest's and the aggregator's fast paths are built.
"""

from meterline.events.model import (
    DEFAULT_LATENESS_MS,
    EVENT_FIELDS,
    MAX_FUTURE_MS,
    MAX_ID_LEN,
    MAX_PROPERTIES,
    RESERVATION_PROPERTY,
    SCHEMA_VERSION,
    PoisonMessage,
    Rules,
    SentEvents,
    UsageEvent,
    ValidEvents,
)
from meterline.events.rules import (
    RFC3339_DATE_TIME,
    check_events,
    parse_timestamp,
    refused_character,
    rfc3339_ms,
    sent_events,
    validate_event,
)
from meterline.events.wire import EncodedEvents, decode_event, encode_event, encode_events

__all__ = [
    "DEFAULT_LATENESS_MS",
    "EVENT_FIELDS",
    "MAX_FUTURE_MS",
    "MAX_ID_LEN",
    "MAX_PROPERTIES",
    "RESERVATION_PROPERTY",
    "RFC3339_DATE_TIME",
    "SCHEMA_VERSION",
    "EncodedEvents",
    "PoisonMessage",
    "Rules",
    "SentEvents",
    "UsageEvent",
    "ValidEvents",
    "check_events",
    "decode_event",
    "encode_event",
    "encode_events",
    "parse_timestamp",
    "refused_character",
    "rfc3339_ms",
    "sent_events",
    "validate_event",
]
