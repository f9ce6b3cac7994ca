"""The OpenAPI description of POST /v1/events: request media types, schemas and examples.

Bodies are parsed by hand (one pydantic model per event would cost ~40% of throughput), so
the request schemas here are written as JSON Schema rather than derived from models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from meterline.events import RESERVATION_PROPERTY, RFC3339_DATE_TIME
from meterline.values import RULE

_TEXT_RULE = (
    "No control (Cc), format (Cf), surrogate (Cs), line separator (Zl, U+2028) or paragraph "
    "separator (Zp, U+2029) characters."
)
_ID = {"type": "string", "minLength": 1, "maxLength": 128}
_TIME = {
    "oneOf": [
        {
            "type": "string",
            "format": "date-time",
            "pattern": f"^{RFC3339_DATE_TIME}$",
            "description": "RFC 3339 date-time: 2026-11-21T10:15:00Z or with an offset "
            "(+01:00), at most nine digits of fraction; no week or ordinal dates, no missing "
            "offset or seconds, no leap second",
        },
        {"type": "integer", "minimum": 0, "description": "epoch milliseconds"},
    ]
}
EVENT: dict[str, Any] = {
    "type": "object",
    "title": "UsageEvent",
    "description": "One usage event. The tenant comes from the API key, never from the body.",
    "required": ["id", "customer", "meter"],
    "additionalProperties": False,
    "properties": {
        "id": {
            **_ID,
            "description": "Idempotency key, unique per tenant (UUIDv7 is ideal). " + _TEXT_RULE,
        },
        "customer": {**_ID, "description": "The tenant's own customer id. " + _TEXT_RULE},
        "meter": {"type": "string", "minLength": 1, "description": "A meter of the catalog."},
        "value": {
            "type": "number",
            "minimum": 0,
            "maximum": 1e15,
            "default": 1,
            "description": f"exact: {RULE} (else 422)",
        },
        "timestamp": {
            **_TIME,
            "description": "When the usage happened (default: receive time); at most 35 days "
            "old and 5 minutes in the future. Retries must resend the same timestamp.",
        },
        "properties": {
            "type": "object",
            "maxProperties": 32,
            "description": "Free-form context kept with the event; nested at most 254 levels "
            "deep (deeper values cannot be written back as JSON: 422); integers within the "
            f"signed 64-bit range; the key `{RESERVATION_PROPERTY}` is reserved (422); the event "
            "must fit in one Kafka message (`MESSAGE_MAX_BYTES`, 422 naming `properties`).",
        },
    },
}
CLOUDEVENT: dict[str, Any] = {
    "type": "object",
    "title": "CloudEvent",
    "description": "CloudEvents 1.0, structured mode: id→id, subject→customer, type→meter, "
    "time→timestamp, data[value_property] (else data.value, else 1)→value, "
    "the rest of data→properties.",
    "required": ["specversion", "id", "source", "type", "subject"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": _ID,
        "source": {"type": "string", "minLength": 1},
        "type": {"type": "string", "minLength": 1, "description": "The meter key."},
        "subject": {**_ID, "description": "The customer."},
        "time": _TIME["oneOf"][0],
        "data": {
            "description": "An object (the value under the meter's value_property, else "
            "`value`; the rest become properties, with their rules) or a number.",
            "oneOf": [{"type": "object"}, {"type": "number", "minimum": 0}],
        },
    },
}
EXAMPLE_EVENT = {
    "id": "0192f0c4-6f1e-7b3c-9d2a-5e8f1a2b3c4d",
    "customer": "cust_42",
    "meter": "api_calls",
    "value": 3,
    "timestamp": "2026-11-21T10:15:00Z",
    "properties": {"model": "small"},
}
EXAMPLE_CLOUDEVENT = {
    "specversion": "1.0",
    "id": "0192f0c4-6f1e-7b3c-9d2a-5e8f1a2b3c4e",
    "source": "/my-app",
    "type": "tokens",
    "subject": "cust_42",
    "time": "2026-11-21T10:15:00Z",
    "data": {"total": 1250, "model": "small"},
}

REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "At most 1,000 events and 1 MiB; the batch is accepted whole or not at all.",
    "content": {
        "application/json": {
            "schema": {"oneOf": [EVENT, {"type": "array", "items": EVENT, "minItems": 1}]},
            "examples": {
                "single": {"summary": "One event", "value": EXAMPLE_EVENT},
                "batch": {"summary": "A batch", "value": [EXAMPLE_EVENT]},
            },
        },
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "One JSON event per line."},
            "example": '{"id": "e1", "customer": "cust_42", "meter": "api_calls"}\n'
            '{"id": "e2", "customer": "cust_42", "meter": "api_calls", "value": 2}\n',
        },
        "application/cloudevents+json": {"schema": CLOUDEVENT, "example": EXAMPLE_CLOUDEVENT},
        "application/cloudevents-batch+json": {
            "schema": {"type": "array", "items": CLOUDEVENT, "minItems": 1},
            "example": [EXAMPLE_CLOUDEVENT],
        },
    },
}


class Accepted(BaseModel):
    accepted: int = Field(description="Events acknowledged by the broker.", examples=[99])
    duplicates: int = Field(
        description="Events whose id this tenant already sent (or repeated in this request); "
        "they are not produced again.",
        examples=[1],
    )


class FieldProblem(BaseModel):
    index: int = Field(description="The event's position in the request (0 for one event).")
    field: str = Field(description="The field at fault ('' for the event or body as a whole).")
    message: str


class Problem(BaseModel):
    error: str = Field(description="A stable code, e.g. unauthorized, rate_limited.")
    message: str


class Invalid(BaseModel):
    error: str = Field(examples=["validation_failed"])
    errors: list[FieldProblem]


def _problem(description: str, retry: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"model": Problem, "description": description}
    if retry:
        out["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        }
    return out


RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": Accepted, "description": "Every event is durably on the broker (acks=all)."},
    401: _problem("Missing, malformed, unknown or revoked API key."),
    403: _problem("The key lacks the `ingest` scope."),
    413: _problem("Body over 1 MiB or more than 1,000 events."),
    415: _problem("Content-Type is not one of the accepted media types."),
    422: {
        "model": Invalid,
        "description": "Every bad field of every bad event, by index and field; none accepted. "
        "Besides the schema's rules: a key repeated in any JSON object, at any depth (field: "
        "its path, e.g. `properties.model`); a timestamp that is not an RFC 3339 date-time; "
        "control, format, surrogate or line/paragraph separator characters in `id`, "
        "`customer` or `meter`; an integer in `properties` outside the signed 64-bit range; a "
        "number too large for a double (the body is refused as not JSON); the reserved "
        f"property `{RESERVATION_PROPERTY}`; an event too large for one Kafka message.",
    },
    429: _problem(
        "Over the tenant's events/s; ingest at capacity; or ingest busy and the tenant above "
        "its share of ingest's recent work (refused before the body is read).",
        retry=True,
    ),
    503: _problem("The broker did not acknowledge in time; retry the same ids.", retry=True),
}

DESCRIPTION = """Send usage events. Answers 202 only after Kafka acknowledged every event of the
request. On any failure (timeout, 429, 503, reset) resend the same events with the same ids and
timestamps: nothing is lost and nothing is counted twice."""
