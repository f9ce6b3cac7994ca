"""Event summaries read the store's (meter, customer) index: the answers must be exactly those
of a full scan of every stored event, whatever the events' order, fate and customer, and
however tests change the stored records in place."""

from __future__ import annotations

import random
from typing import Any

from stripe_emulator import EmulatorConfig
from stripe_emulator.core import Call, Emulator
from stripe_emulator.faults import FaultSettings
from stripe_emulator.forms import Params
from stripe_emulator.meter_events import cancel, ingest
from stripe_emulator.meters import aggregate, create_meter, list_summaries
from stripe_emulator.state import Store

JSON = dict[str, Any]
HOUR = 3600
CUSTOMERS = ("cus_a", "cus_b", "cus_c")


def _meter(emu: Emulator, event_name: str, formula: str) -> JSON:
    params = {"display_name": event_name, "event_name": event_name}
    params["default_aggregation"] = {"formula": formula}  # type: ignore[assignment]
    return create_meter(emu, Call("POST", "/v1/billing/meters", Params(params)))


def _fill(emu: Emulator, start: int, n: int, seed: int) -> None:
    """`n` events over 48 hours from `start`, out of time order, some of them canceled,
    dropped, invalid (no value) or for another meter."""
    rng = random.Random(seed)
    for i in range(n):
        event_name = rng.choice(("calls", "calls", "tokens", "nobody"))
        payload = {"stripe_customer_id": rng.choice(CUSTOMERS), "value": str(rng.randint(1, 9))}
        timestamp = start + rng.randrange(48 * HOUR)
        event = {"event_name": event_name, "payload": payload, "identifier": f"e{i}"}
        record = ingest(emu, {**event, "timestamp": timestamp}, "stream", strict=False)
        if rng.random() < 0.1 and record["status"] == "accepted":
            cancel(emu, event_name, f"e{i}")


def _summaries(emu: Emulator, meter: JSON, customer: str, start: int, end: int) -> dict[int, Any]:
    params = Params(
        {
            "customer": customer,
            "start_time": str(start),
            "end_time": str(end),
            "value_grouping_window": "hour",
            "limit": "100",
        }
    )
    call = Call("GET", "", params, {"id": meter["id"]})
    return {s["start_time"]: s["aggregated_value"] for s in list_summaries(emu, call)["data"]}


def _full_scan(emu: Emulator, meter: JSON, customer: str, start: int, end: int) -> dict[int, Any]:
    """The summaries as computed before the index: every stored event looked at."""
    now = emu.clock.now()
    seen = [
        r
        for r in emu.store.meter_events
        if r["meter"] == meter["id"]
        and r["customer"] == customer
        and r["status"] in ("accepted", "canceled")
        and r["available_at"] <= now
        and (r["canceled_at"] is None or r["canceled_at"] > now)
        and start <= r["timestamp"] < end
    ]
    out = {}
    for s in range(start, end, HOUR):
        inside = [r for r in seen if s <= r["timestamp"] < s + HOUR]
        if inside:
            out[s] = aggregate(meter["default_aggregation"]["formula"], inside)
    return out


def _emulator(**config: Any) -> tuple[Emulator, int]:
    emu = Emulator(EmulatorConfig(**config))
    emu.faults.configure(FaultSettings(seed=3, drop_meter_events=0.1))
    return emu, int(emu.clock.now()) // HOUR * HOUR - 50 * HOUR


def test_summaries_match_a_full_scan_for_every_formula_and_window() -> None:
    emu, start = _emulator()
    meters = [_meter(emu, "calls", "sum"), _meter(emu, "tokens", "last")]
    _fill(emu, start, 1500, seed=1)
    statuses = {r["status"] for r in emu.store.meter_events}
    assert statuses == {"accepted", "canceled", "dropped", "invalid"}
    for meter in meters:
        for customer in (*CUSTOMERS, "cus_unknown"):
            for begin, end in ((start, start + 48 * HOUR), (start + 5 * HOUR, start + 7 * HOUR)):
                expected = _full_scan(emu, meter, customer, begin, end)
                assert _summaries(emu, meter, customer, begin, end) == expected
    count = _meter(emu, "nobody", "count")
    assert _summaries(emu, count, "cus_a", start, start + 48 * HOUR) == {}


def test_same_timestamp_events_keep_their_received_order_for_last() -> None:
    emu, start = _emulator()
    emu.faults.configure(FaultSettings())
    meter = _meter(emu, "tokens", "last")
    for i, value in enumerate(("5", "7", "2")):
        payload = {"stripe_customer_id": "cus_a", "value": value}
        event = {"event_name": "tokens", "payload": payload, "identifier": f"t{i}"}
        ingest(emu, {**event, "timestamp": start + 10}, "v1", strict=True)
    assert _summaries(emu, meter, "cus_a", start, start + HOUR) == {start: 2.0}
    assert _full_scan(emu, meter, "cus_a", start, start + HOUR) == {start: 2.0}


def test_the_index_survives_persistence_and_reset() -> None:
    emu, start = _emulator()
    meter = _meter(emu, "calls", "sum")
    _fill(emu, start, 300, seed=2)
    before = {c: _summaries(emu, meter, c, start, start + 48 * HOUR) for c in CUSTOMERS}
    assert any(before.values())
    emu.store = Store.from_json(emu.store.to_json())
    after = {c: _summaries(emu, meter, c, start, start + 48 * HOUR) for c in CUSTOMERS}
    assert after == before
    emu.reset()
    assert emu.store.event_index == {} and emu.store.meter_events == []
    assert _summaries(emu, _meter(emu, "calls", "sum"), "cus_a", start, start + HOUR) == {}


def test_records_changed_or_appended_in_place_are_seen_as_they_are_now() -> None:
    """As the reporter's reconciliation tests inject Stripe-side faults."""
    emu, start = _emulator()
    meter = _meter(emu, "calls", "sum")
    _fill(emu, start, 300, seed=5)
    window = (start, start + 48 * HOUR)
    _summaries(emu, meter, "cus_a", *window)  # the index is built
    records = [r for r in emu.store.meter_events if r["status"] == "accepted"]
    mine = [r for r in records if r["meter"] == meter["id"] and r["customer"] == "cus_a"]
    mine[0]["timestamp"] += HOUR
    mine[1]["value"] = "1000"
    mine[2]["status"] = "dropped"
    emu.store.meter_events.append({**mine[3], "identifier": "someone-else"})
    emu.store.meter_events.append({**mine[4], "customer": "cus_b", "identifier": "moved"})
    for customer in CUSTOMERS:
        expected = _full_scan(emu, meter, customer, *window)
        assert _summaries(emu, meter, customer, *window) == expected


def test_processing_delay_and_cancellation_follow_the_clock() -> None:
    emu, start = _emulator(meter_processing_delay=60)
    meter = _meter(emu, "calls", "sum")
    _fill(emu, start, 200, seed=4)
    window = (start, start + 48 * HOUR)
    assert _summaries(emu, meter, "cus_a", *window) == {}
    emu.clock.advance(61)
    assert _summaries(emu, meter, "cus_a", *window) == _full_scan(emu, meter, "cus_a", *window)
    assert _summaries(emu, meter, "cus_a", *window)
