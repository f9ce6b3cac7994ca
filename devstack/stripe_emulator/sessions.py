"""v2 billing: meter event sessions, the high-throughput stream, v2 events and adjustments.

v2 bodies are JSON and timestamps RFC 3339 strings. The stream authenticates with a session
token (not the secret key): an unknown token is a 401 `authentication_error`, an expired one
a 401 `temporary_session_expired` that the SDK raises as `TemporarySessionExpiredError`.
The stream answers 200 `{}` and validates each event asynchronously.

`POST /v2/billing/meter_event_session` returns a token valid for `session_ttl_seconds` (15
minutes). `POST /v2/billing/meter_event_stream` takes at most 100 events; the results of its
later validation are visible through the control API (`GET /_emulator/meter_events`). The
expired-token error's code is `billing_meter_event_session_expired`. `POST
/v2/billing/meter_events` validates synchronously, like v1; `POST
/v2/billing/meter_event_adjustments` is emulated too. Thin (v2) events are not.
"""

from __future__ import annotations

import secrets
from typing import Any

from . import meter_events
from .clock import from_rfc3339, to_rfc3339
from .core import Call, Emulator
from .errors import StripeError, invalid, missing_param, unauthorized
from .state import new_id

JSON = dict[str, Any]
MAX_STREAM_EVENTS = 100


def create_session(emu: Emulator, call: Call) -> JSON:
    """POST /v2/billing/meter_event_session: a token valid `session_ttl_seconds`."""
    now = emu.clock.now()
    session: JSON = {
        "id": new_id("mes", 24),
        "object": "v2.billing.meter_event_session",
        "authentication_token": "mes_tok_" + secrets.token_urlsafe(32),
        "created": to_rfc3339(now),
        "expires_at": to_rfc3339(now + emu.config.session_ttl_seconds),
        "livemode": False,
    }
    emu.store.sessions[session["authentication_token"]] = {
        "id": session["id"],
        "expires_at": now + emu.config.session_ttl_seconds,
    }
    return session


def authenticate_stream(emu: Emulator, token: str) -> None:
    """Check a stream token; raises the 401s described in the module docstring."""
    session = emu.store.sessions.get(token)
    if session is None:
        raise unauthorized("Invalid meter event session token.")
    if session["expires_at"] <= emu.clock.now():
        raise StripeError(
            401,
            "The meter event session has expired. Create a new session.",
            type_="temporary_session_expired",
            code="billing_meter_event_session_expired",
        )


def stream(emu: Emulator, call: Call) -> JSON:
    """POST /v2/billing/meter_event_stream: up to 100 events, accepted wholesale."""
    authenticate_stream(emu, call.token)
    events = call.params.list("events")
    if not events:
        raise missing_param("events")
    if len(events) > MAX_STREAM_EVENTS:
        raise invalid(f"At most {MAX_STREAM_EVENTS} events per request.", "events")
    for raw in events:
        try:
            event = _v2_event(raw if isinstance(raw, dict) else {})
        except StripeError as exc:
            meter_events.reject(emu, raw if isinstance(raw, dict) else {}, "stream", exc.message)
            continue
        meter_events.ingest(emu, event, "stream", strict=False)
    return {}


def _v2_event(raw: JSON) -> JSON:
    timestamp = raw.get("timestamp")
    parsed: float | None = None
    if isinstance(timestamp, str):
        try:
            parsed = from_rfc3339(timestamp)
        except ValueError:
            raise invalid(f"Invalid timestamp: {timestamp}", "timestamp") from None
    return {
        "event_name": raw.get("event_name"),
        "identifier": raw.get("identifier"),
        "payload": raw.get("payload"),
        "timestamp": parsed,
    }


def create_event(emu: Emulator, call: Call) -> JSON:
    """POST /v2/billing/meter_events: synchronous validation, like v1."""
    record = meter_events.ingest(emu, _v2_event(call.params.data), "v2", strict=True)
    return {
        "object": "v2.billing.meter_event",
        "created": to_rfc3339(record["received_at"]),
        "event_name": record["event_name"],
        "identifier": record["identifier"],
        "livemode": False,
        "payload": record["payload"],
        "timestamp": to_rfc3339(record["timestamp"]),
    }


def create_adjustment(emu: Emulator, call: Call) -> JSON:
    """POST /v2/billing/meter_event_adjustments: `{"event_name", "type": "cancel", "cancel"}`."""
    p = call.params
    event_name = p.req("event_name")
    if (p.str("type") or "cancel") != "cancel":
        raise invalid("Invalid type.", "type")
    identifier = p.sub("cancel").str("identifier")
    if identifier is None:
        raise missing_param("cancel.identifier")
    meter_events.cancel(emu, event_name, identifier)
    return {
        "id": new_id("mea", 24),
        "object": "v2.billing.meter_event_adjustment",
        "cancel": {"identifier": identifier},
        "created": to_rfc3339(emu.clock.now()),
        "event_name": event_name,
        "livemode": False,
        "status": "pending" if emu.config.meter_processing_delay > 0 else "complete",
        "type": "cancel",
    }
