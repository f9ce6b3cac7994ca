"""Meter event intake shared by v1, v2 and the v2 stream, plus cancel adjustments.

Validation has two kinds of failure. Structural problems (missing fields, the timestamp
window, more than 15 significant digits, a repeated identifier) are synchronous 400s on v1
and v2 `meter_events`. Referential problems (no meter for the event name, a deactivated
meter, an unknown customer when `require_known_customer`) are recorded on the event as
`status: invalid` unless `sync_meter_event_validation` is set. The v2 stream validates
everything asynchronously: nothing it sends is ever rejected in the response.

Every received event is recorded in `store.meter_events` with its fate: `accepted`,
`dropped` (fault injection; the identifier is not registered, so a resend can repair it),
`canceled`, or `invalid` (with `error`). Summaries see an event `meter_processing_delay`
seconds after it was received.

The synchronous 400s of v1 (and v2 `meter_events`): `event_name` or the payload keys missing;
`identifier` longer than 100 characters; `timestamp` older than 35 days or more than 5 minutes
ahead (codes `timestamp_too_far_in_past`, `timestamp_in_future`); a value with more than 15
significant digits or not finite; an identifier already used within 24 h, answered "An event
already exists with identifier X." with header `Stripe-Should-Retry: false`, so the SDK never
retries it.

Adjustments: `type=cancel` with `cancel[identifier]`, only within 24 h of receipt, else a 400
`meter_event_adjustment_window_expired`; an unknown identifier or the wrong `event_name` is a
400 too. Legacy usage records (removed in 2025-03-31.basil) are not emulated.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from .core import Emulator, current_request
from .errors import StripeError, invalid, missing_param
from .state import new_id

JSON = dict[str, Any]
DUPLICATE_HEADERS = {"Stripe-Should-Retry": "false"}


def meter_for(emu: Emulator, event_name: str) -> JSON | None:
    """The meter (active or not) that listens to `event_name`."""
    for meter in emu.store.table("billing.meter").values():
        if meter["event_name"] == event_name:
            return meter
    return None


def significant_digits(value: Decimal) -> int:
    """Count significant digits, ignoring leading and trailing zeros."""
    digits = value.normalize().as_tuple().digits
    return len(digits) if any(digits) else 1


def parse_value(emu: Emulator, raw: Any, param: str) -> Decimal:
    """A finite decimal with at most `max_significant_digits` digits, else a 400."""
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise invalid(f"Invalid value: {raw!r} is not a number.", param) from None
    if not value.is_finite():
        raise invalid(f"Invalid value: {raw!r} is not finite.", param)
    limit = emu.config.max_significant_digits
    if significant_digits(value) > limit:
        raise invalid(f"Value {raw} has more than {limit} significant digits.", param)
    return value


def check_timestamp(emu: Emulator, timestamp: float) -> None:
    """Reject timestamps older than the past window or too far in the future."""
    now = emu.clock.now()
    if timestamp < now - emu.config.past_window_seconds:
        days = emu.config.past_window_seconds // 86_400
        raise invalid(
            f"Timestamp must be within the past {days} days.",
            "timestamp",
            "timestamp_too_far_in_past",
        )
    if timestamp > now + emu.config.future_window_seconds:
        minutes = emu.config.future_window_seconds // 60
        raise invalid(
            f"Timestamp must be no more than {minutes} minutes in the future.",
            "timestamp",
            "timestamp_in_future",
        )


def check_identifier(emu: Emulator, identifier: str) -> None:
    """A 400 with `Stripe-Should-Retry: false` when the identifier was seen in the window."""
    if len(identifier) > 100:
        raise invalid("identifier must be at most 100 characters.", "identifier")
    index = emu.store.identifiers.get(identifier)
    if index is None:
        return
    seen = emu.store.meter_events[index]
    if seen["received_at"] > emu.clock.now() - emu.config.identifier_dedupe_seconds:
        raise StripeError(
            400,
            f"An event already exists with identifier {identifier}.",
            param="identifier",
            headers=DUPLICATE_HEADERS,
        )


def structural(emu: Emulator, meter: JSON | None, payload: Any) -> tuple[str, Decimal]:
    """Validate the payload against the meter's keys; returns (customer, value)."""
    if not isinstance(payload, dict):
        raise missing_param("payload")
    customer_key = (
        (meter or {}).get("customer_mapping", {}).get("event_payload_key", "stripe_customer_id")
    )
    value_key = (meter or {}).get("value_settings", {}).get("event_payload_key", "value")
    customer = payload.get(customer_key)
    if not isinstance(customer, str) or not customer:
        raise missing_param(f"payload[{customer_key}]")
    raw_value = payload.get(value_key)
    if raw_value is None:
        if meter is None or meter["default_aggregation"]["formula"] != "count":
            raise missing_param(f"payload[{value_key}]")
        raw_value = "1"
    return customer, parse_value(emu, raw_value, f"payload[{value_key}]")


def referential(emu: Emulator, event_name: str, meter: JSON | None, customer: str) -> str | None:
    """The asynchronous error for this event, or None when it can be counted."""
    if meter is None:
        return f"No active meter was found for event_name {event_name}."
    if meter["status"] != "active":
        return f"The meter {meter['id']} is inactive."
    if emu.config.require_known_customer:
        found = emu.store.find("customer", customer)
        if found is None or found.get("deleted"):
            return f"No such customer: '{customer}'"
    return None


def ingest(emu: Emulator, event: JSON, source: str, strict: bool) -> JSON:
    """Validate and record one event; returns the record.

    `event` holds `event_name`, `payload`, optional `identifier` and `timestamp` (seconds).
    With `strict`, structural errors raise `StripeError`; referential errors raise too when
    `sync_meter_event_validation` is set. Without `strict` (the stream) errors are recorded.
    """
    try:
        return _ingest(emu, event, source, strict)
    except StripeError as exc:
        if strict:
            raise
        return reject(emu, event, source, exc.message)


def reject(emu: Emulator, event: JSON, source: str, message: str) -> JSON:
    """Record an event that failed validation asynchronously."""
    return _record(emu, event, source, (None, None, None), "invalid", message)


def _ingest(emu: Emulator, event: JSON, source: str, strict: bool) -> JSON:
    event_name = event.get("event_name")
    if not isinstance(event_name, str) or not event_name:
        raise missing_param("event_name")
    identifier = event.get("identifier") or new_id("mev", 20)
    event["identifier"] = identifier
    check_identifier(emu, identifier)
    timestamp = float(event.get("timestamp") or emu.clock.now())
    event["timestamp"] = int(timestamp)
    check_timestamp(emu, timestamp)
    meter = meter_for(emu, event_name)
    customer, value = structural(emu, meter, event.get("payload"))
    error = referential(emu, event_name, meter, customer)
    if error is not None and strict and emu.config.sync_meter_event_validation:
        raise invalid(error, "event_name" if "meter" in error else "payload")
    status = "invalid" if error else "accepted"
    if status == "accepted" and emu.faults.drop_meter_event(identifier):
        status = "dropped"
    record = _record(emu, event, source, (meter, customer, value), status, error)
    if status != "dropped":
        emu.store.identifiers[identifier] = len(emu.store.meter_events) - 1
    return record


def _record(
    emu: Emulator,
    event: JSON,
    source: str,
    parsed: tuple[JSON | None, str | None, Decimal | None],
    status: str,
    error: str | None,
) -> JSON:
    meter, customer, value = parsed
    now = emu.clock.now()
    request = current_request.get() or {}
    record = {
        "identifier": str(event.get("identifier") or ""),
        "event_name": event.get("event_name"),
        "meter": meter["id"] if meter else None,
        "customer": customer,
        "value": None if value is None else str(value),
        "payload": event.get("payload"),
        "timestamp": event.get("timestamp"),
        "received_at": now,
        "available_at": now + emu.config.meter_processing_delay,
        "status": status,
        "error": error,
        "canceled_at": None,
        "source": source,
        "request_id": request.get("request_id"),
    }
    emu.store.meter_events.append(record)
    return record


def cancel(emu: Emulator, event_name: str, identifier: str) -> JSON:
    """Cancel the event with `identifier`; only within the adjustment window after receipt.

    Raises a 400 for an unknown identifier, a different event name or an expired window.
    Canceling twice is harmless. The cancellation reaches summaries after the processing delay.
    """
    index = emu.store.identifiers.get(identifier)
    if index is None:
        raise invalid(f"No meter event exists with identifier {identifier}.", "cancel[identifier]")
    record = emu.store.meter_events[index]
    if record["event_name"] != event_name:
        raise invalid(
            f"The meter event {identifier} belongs to event_name {record['event_name']}.",
            "event_name",
        )
    now = emu.clock.now()
    if record["received_at"] < now - emu.config.adjustment_window_seconds:
        raise invalid(
            "Meter events can only be canceled within 24 hours of being received.",
            "cancel[identifier]",
            "meter_event_adjustment_window_expired",
        )
    if record["status"] == "accepted":
        record["status"] = "canceled"
        record["canceled_at"] = now + emu.config.meter_processing_delay
    return record
