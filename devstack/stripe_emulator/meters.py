"""Billing meters, their lifecycle, v1 meter events and adjustments, and event summaries.

Meters: create (unique `event_name`, formula `sum|count|last`, custom `customer_mapping` and
`value_settings` keys), retrieve, update `display_name`, list (`status`), deactivate and
reactivate (a 400 when the meter already is in that state).

Event summaries:
- `customer`, `start_time` (inclusive) and `end_time` (exclusive) are required and must be
  minute-aligned; with `value_grouping_window=hour|day`, hour- or UTC-day-aligned.
- Summary ids are stable, so summaries paginate. Empty windows are omitted and the newest
  comes first (`omit_empty_summaries` and `summaries_newest_first` change this).
- Processing is asynchronous: an event, and a cancellation, reach summaries
  `meter_processing_delay` seconds after receipt (default 0).
- `last` takes the event with the latest timestamp. Stripe does not document which of several
  events with the same timestamp wins: `last_tie_break` is `latest_received` (default) or
  `earliest_received`, and invoices follow the same rule.
- A call reads only that customer's events on that meter (an index beside `meter_events`, not
  persisted), so reconciling many customers does not rescan every stored event.
"""

from __future__ import annotations

import copy
import hashlib
from decimal import Decimal
from typing import Any

from . import meter_events
from .core import Call, Emulator
from .errors import invalid, missing_param
from .listing import newest_first, paginate
from .state import new_id

JSON = dict[str, Any]
FORMULAS = ("sum", "count", "last")
WINDOWS = {"hour": 3600, "day": 86_400}


def create_meter(emu: Emulator, call: Call) -> JSON:
    """POST /v1/billing/meters: `event_name` must be unique among all meters."""
    p = call.params
    event_name = p.req("event_name", max_len=100)
    if meter_events.meter_for(emu, event_name) is not None:
        raise invalid(
            f"A meter with event_name {event_name} already exists.",
            "event_name",
            "resource_already_exists",
        )
    formula = p.sub("default_aggregation").req("formula") if "default_aggregation" in p else None
    if formula is None:
        raise missing_param("default_aggregation[formula]")
    if formula not in FORMULAS:
        raise invalid(f"Invalid formula: {formula}", "default_aggregation[formula]")
    now = emu.now()
    meter: JSON = {
        "id": new_id("mtr_test", 24),
        "object": "billing.meter",
        "created": now,
        "updated": now,
        "livemode": False,
        "display_name": p.req("display_name", max_len=250),
        "event_name": event_name,
        "event_time_window": p.str("event_time_window"),
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "default_aggregation": {"formula": formula},
        "customer_mapping": _customer_mapping(p.sub("customer_mapping").data),
        "value_settings": {
            "event_payload_key": p.sub("value_settings").str("event_payload_key") or "value"
        },
    }
    return emu.store.put("billing.meter", meter)


def _customer_mapping(data: JSON) -> JSON:
    key = data.get("event_payload_key") or "stripe_customer_id"
    return {"event_payload_key": key, "type": data.get("type") or "by_id"}


def retrieve_meter(emu: Emulator, call: Call) -> JSON:
    """GET /v1/billing/meters/{id}."""
    return emu.store.get("billing.meter", call.arg("id"), "billing meter")


def update_meter(emu: Emulator, call: Call) -> JSON:
    """POST /v1/billing/meters/{id}: only `display_name` can change."""
    meter = retrieve_meter(emu, call)
    meter["display_name"] = call.params.str("display_name") or meter["display_name"]
    meter["updated"] = emu.now()
    return meter


def deactivate_meter(emu: Emulator, call: Call) -> JSON:
    """POST /v1/billing/meters/{id}/deactivate: the meter then accepts no events."""
    meter = retrieve_meter(emu, call)
    if meter["status"] == "inactive":
        raise invalid(f"Meter {meter['id']} is already inactive.", "id")
    meter["status"] = "inactive"
    meter["status_transitions"] = {"deactivated_at": emu.now()}
    meter["updated"] = emu.now()
    return meter


def reactivate_meter(emu: Emulator, call: Call) -> JSON:
    """POST /v1/billing/meters/{id}/reactivate."""
    meter = retrieve_meter(emu, call)
    if meter["status"] == "active":
        raise invalid(f"Meter {meter['id']} is already active.", "id")
    meter["status"] = "active"
    meter["status_transitions"] = {"deactivated_at": None}
    meter["updated"] = emu.now()
    return meter


def list_meters(emu: Emulator, call: Call) -> JSON:
    """GET /v1/billing/meters with optional `status`."""
    status = call.params.str("status")
    items = [
        m
        for m in newest_first(emu.store.table("billing.meter").values())
        if status is None or m["status"] == status
    ]
    return paginate(items, call.params, "/v1/billing/meters")


def create_meter_event(emu: Emulator, call: Call) -> JSON:
    """POST /v1/billing/meter_events (form-encoded; payload values are strings)."""
    p = call.params
    event = {
        "event_name": p.req("event_name", max_len=100),
        "payload": p.dict("payload") or None,
        "identifier": p.str("identifier", max_len=100),
        "timestamp": p.int("timestamp"),
    }
    record = meter_events.ingest(emu, event, "v1", strict=True)
    return {
        "object": "billing.meter_event",
        "created": emu.now(),
        "event_name": record["event_name"],
        "identifier": record["identifier"],
        "livemode": False,
        "payload": copy.deepcopy(record["payload"]),
        "timestamp": record["timestamp"],
    }


def create_adjustment(emu: Emulator, call: Call) -> JSON:
    """POST /v1/billing/meter_event_adjustments (`type=cancel`, `cancel[identifier]`)."""
    p = call.params
    event_name = p.req("event_name")
    kind = p.str("type") or "cancel"
    if kind != "cancel":
        raise invalid(f"Invalid type: {kind}", "type")
    identifier = p.sub("cancel").str("identifier")
    if identifier is None:
        raise missing_param("cancel[identifier]")
    meter_events.cancel(emu, event_name, identifier)
    return {
        "object": "billing.meter_event_adjustment",
        "cancel": {"identifier": identifier},
        "event_name": event_name,
        "livemode": False,
        "status": "pending" if emu.config.meter_processing_delay > 0 else "complete",
        "type": "cancel",
    }


def list_summaries(emu: Emulator, call: Call) -> JSON:
    """GET /v1/billing/meters/{id}/event_summaries.

    `start_time` (inclusive) and `end_time` (exclusive) must be minute-aligned, or hour- or
    UTC-day-aligned with `value_grouping_window`. Only events already processed count.
    """
    meter = retrieve_meter(emu, call)
    p = call.params
    customer = p.req("customer")
    start, end, window = _window(
        p.int("start_time"), p.int("end_time"), p.str("value_grouping_window")
    )
    events = processed_events(emu, meter["id"], customer, start, end)
    groups = _by_bucket(events, start, window)
    summaries = [
        _summary(
            meter,
            customer,
            s,
            min(s + window, end),
            groups.get(s, []),
            emu.config.last_tie_break,
        )
        for s in range(start, end, window)
    ]
    if emu.config.omit_empty_summaries:
        summaries = [s for s in summaries if s["_count"]]
    for summary in summaries:
        del summary["_count"]
    if emu.config.summaries_newest_first:
        summaries.reverse()
    return paginate(summaries, p, f"/v1/billing/meters/{meter['id']}/event_summaries")


def _window(start: int | None, end: int | None, grouping: str | None) -> tuple[int, int, int]:
    if start is None:
        raise missing_param("start_time")
    if end is None:
        raise missing_param("end_time")
    if grouping is not None and grouping not in WINDOWS:
        raise invalid(f"Invalid value_grouping_window: {grouping}", "value_grouping_window")
    step = WINDOWS[grouping] if grouping else 60
    for name, value in (("start_time", start), ("end_time", end)):
        if value % step:
            unit = grouping or "minute"
            raise invalid(f"{name} must be aligned with {unit} boundaries.", name)
    if end <= start:
        raise invalid("end_time must be after start_time.", "end_time")
    return start, end, WINDOWS[grouping] if grouping else end - start


def processed_events(
    emu: Emulator, meter_id: str, customer: str, start: int, end: int
) -> list[JSON]:
    """Events of `customer` on the meter, timestamped in [start, end), that summaries see:
    accepted (or canceled, until the cancellation is processed) and already processed. In the
    order they were received. Reads the store's (meter, customer) index, so a call costs the
    customer's events on this meter, not every stored event."""
    now = emu.clock.now()
    return [
        record
        for record in emu.store.events_of(meter_id, customer)
        if record["meter"] == meter_id
        and record["customer"] == customer
        and record["status"] in ("accepted", "canceled")
        and record["available_at"] <= now
        and (record["canceled_at"] is None or record["canceled_at"] > now)
        and start <= record["timestamp"] < end
    ]


def _by_bucket(events: list[JSON], start: int, window: int) -> dict[int, list[JSON]]:
    """Events grouped by the start of their window (each group keeps the events' order)."""
    groups: dict[int, list[JSON]] = {}
    for event in events:
        bucket = start + (event["timestamp"] - start) // window * window
        groups.setdefault(bucket, []).append(event)
    return groups


def _summary(
    meter: JSON, customer: str, start: int, end: int, inside: list[JSON], tie_break: str
) -> JSON:
    digest = hashlib.sha256(f"{meter['id']}|{customer}|{start}|{end}".encode()).hexdigest()
    return {
        "id": "mtrusg_test_" + digest[:40],
        "object": "billing.meter_event_summary",
        "aggregated_value": aggregate(meter["default_aggregation"]["formula"], inside, tie_break),
        "end_time": end,
        "livemode": False,
        "meter": meter["id"],
        "start_time": start,
        "_count": len(inside),
    }


def aggregate(formula: str, events: list[JSON], tie_break: str = "latest_received") -> float:
    """Apply `sum`, `count` or `last` to events (in the order received). `last` takes the
    latest timestamp; among equal timestamps the latest or the earliest received, per
    `tie_break` (the emulator's `last_tie_break`)."""
    if formula == "count":
        return float(len(events))
    if not events:
        return 0.0
    if formula == "last":
        latest = max(events, key=lambda e: e["timestamp"])
        tied = [e for e in events if e["timestamp"] == latest["timestamp"]]
        chosen = tied[-1] if tie_break == "latest_received" else tied[0]
        return float(Decimal(chosen["value"]))
    return float(sum((Decimal(e["value"]) for e in events), Decimal(0)))
