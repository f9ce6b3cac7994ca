"""Billing meters, v1 meter events, adjustments and event summaries through the real SDK."""

from __future__ import annotations

import dataclasses
import time

import pytest
import stripe

from stripe_emulator import EmulatorConfig, EmulatorControl, EmulatorServer
from tests.fixtures.stripe import StripeEmulatorHandle

from . import support

DAY = 86_400


def _hour_start() -> int:
    return int(time.time()) // 3600 * 3600


def test_meter_lifecycle(stripe_client: stripe.StripeClient) -> None:
    meter = support.meter(stripe_client)
    assert meter.status == "active"
    assert meter.customer_mapping.event_payload_key == "stripe_customer_id"
    assert meter.value_settings.event_payload_key == "value"
    renamed = stripe_client.v1.billing.meters.update(meter.id, {"display_name": "Calls"})
    assert renamed.display_name == "Calls"
    off = stripe_client.v1.billing.meters.deactivate(meter.id)
    assert off.status == "inactive" and off.status_transitions.deactivated_at
    assert stripe_client.v1.billing.meters.list({"status": "active"}).data == []
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.billing.meters.deactivate(meter.id)
    assert stripe_client.v1.billing.meters.reactivate(meter.id).status == "active"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.billing.meters.reactivate(meter.id)
    assert stripe_client.v1.billing.meters.retrieve(meter.id).display_name == "Calls"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"display_name": "x", "event_name": "e"}, "default_aggregation[formula]"),
        (
            {"display_name": "x", "event_name": "e", "default_aggregation": {"formula": "avg"}},
            "default_aggregation[formula]",
        ),
        ({"event_name": "e", "default_aggregation": {"formula": "sum"}}, "display_name"),
    ],
)
def test_meter_validation(stripe_client: stripe.StripeClient, params: dict, param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.billing.meters.create(params)
    assert caught.value.param == param


def test_event_name_is_unique(stripe_client: stripe.StripeClient) -> None:
    support.meter(stripe_client)
    with pytest.raises(stripe.InvalidRequestError):
        support.meter(stripe_client)


def test_meter_event_and_summary(stripe_client: stripe.StripeClient) -> None:
    meter = support.meter(stripe_client)
    cus = support.customer(stripe_client)
    event = support.send(stripe_client, cus.id, "2.5", identifier="hour-1")
    assert event.object == "billing.meter_event" and event.identifier == "hour-1"
    support.send(stripe_client, cus.id, "4")
    start = _hour_start()
    summaries = stripe_client.v1.billing.meters.event_summaries.list(
        meter.id, {"customer": cus.id, "start_time": start, "end_time": start + 3600}
    )
    assert [s.aggregated_value for s in summaries.data] == [6.5]
    assert summaries.data[0].start_time == start and summaries.data[0].meter == meter.id


def test_duplicate_identifier_is_400_should_not_retry(
    stripe_emulator: StripeEmulatorHandle,
) -> None:
    client = stripe_emulator.client(max_network_retries=3)
    support.meter(client)
    cus = support.customer(client)
    support.send(client, cus.id, "1", identifier="dup")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        support.send(client, cus.id, "1", identifier="dup")
    assert caught.value.http_status == 400
    assert caught.value.headers["Stripe-Should-Retry"] == "false"
    assert "An event already exists with identifier dup." in str(caught.value.user_message)
    sent = stripe_emulator.control.requests(path="/v1/billing/meter_events")
    assert len(sent) == 2


def test_identifier_reusable_after_dedupe_window(stripe_emulator: StripeEmulatorHandle) -> None:
    client = stripe_emulator.client()
    support.meter(client)
    cus = support.customer(client)
    support.send(client, cus.id, "1", identifier="again")
    stripe_emulator.control.advance_clock(DAY + 1)
    support.send(client, cus.id, "1", identifier="again")


def test_timestamp_window(stripe_emulator: StripeEmulatorHandle) -> None:
    client = stripe_emulator.client()
    support.meter(client)
    cus = support.customer(client)
    now = int(stripe_emulator.control.now())
    support.send(client, cus.id, "1", timestamp=now - 35 * DAY + 60)
    support.send(client, cus.id, "1", timestamp=now + 290)
    with pytest.raises(stripe.InvalidRequestError) as old:
        support.send(client, cus.id, "1", timestamp=now - 35 * DAY - 60)
    assert old.value.param == "timestamp" and old.value.code == "timestamp_too_far_in_past"
    with pytest.raises(stripe.InvalidRequestError) as future:
        support.send(client, cus.id, "1", timestamp=now + 400)
    assert future.value.code == "timestamp_in_future"


@pytest.mark.parametrize("value", ["1234567890.123456", "abc", "NaN", "Infinity"])
def test_bad_values_are_rejected(stripe_client: stripe.StripeClient, value: str) -> None:
    support.meter(stripe_client)
    cus = support.customer(stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        support.send(stripe_client, cus.id, value)
    assert caught.value.param == "payload[value]"


def test_fifteen_significant_digits_pass(stripe_client: stripe.StripeClient) -> None:
    support.meter(stripe_client)
    cus = support.customer(stripe_client)
    support.send(stripe_client, cus.id, "12345678901234.5")
    support.send(stripe_client, cus.id, "100000000000000000000")


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"value": "1"}, "payload[stripe_customer_id]"),
        ({"stripe_customer_id": "c"}, "payload[value]"),
        (None, "payload"),
    ],
)
def test_payload_validation(
    stripe_client: stripe.StripeClient, payload: dict | None, param: str
) -> None:
    support.meter(stripe_client)
    params = {"event_name": "api_calls", "payload": payload}
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.billing.meter_events.create(params)  # type: ignore[arg-type]
    assert caught.value.param == param


def test_identifier_too_long(stripe_client: stripe.StripeClient) -> None:
    support.meter(stripe_client)
    with pytest.raises(stripe.InvalidRequestError):
        support.send(stripe_client, "cus_x", "1", identifier="x" * 101)


def test_unknown_meter_and_inactive_meter_fail_asynchronously(
    stripe_emulator: StripeEmulatorHandle,
) -> None:
    client = stripe_emulator.client()
    meter = support.meter(client)
    support.send(client, "cus_a", "1", event_name="nobody_listens", identifier="orphan")
    client.v1.billing.meters.deactivate(meter.id)
    support.send(client, "cus_a", "1", identifier="inactive")
    records = {r["identifier"]: r for r in stripe_emulator.control.meter_events(status="invalid")}
    assert set(records) == {"orphan", "inactive"}
    assert "No active meter" in records["orphan"]["error"]


@pytest.mark.parametrize(
    ("tie_break", "billed"), [("latest_received", 5.0), ("earliest_received", 8.0)]
)
def test_last_formula_tie_break_is_configurable(
    stripe_emulator: StripeEmulatorHandle, tie_break: str, billed: float
) -> None:
    emulator = stripe_emulator.emulator
    config = emulator.config
    emulator.config = dataclasses.replace(config, last_tie_break=tie_break)
    try:
        client = stripe_emulator.client()
        last = support.meter(client, "seats", "last")
        cus = support.customer(client)
        now = int(time.time()) // 60 * 60
        for value in ("8", "2", "5"):
            support.send(client, cus.id, value, event_name="seats", timestamp=now - 60)
        window = {"customer": cus.id, "start_time": now - 600, "end_time": now + 60}
        summary = client.v1.billing.meters.event_summaries.list(last.id, window).data[0]
        assert summary.aggregated_value == billed
    finally:
        emulator.config = config


def test_unknown_tie_break_is_a_config_problem() -> None:
    problems = EmulatorConfig(last_tie_break="random").validate()
    assert problems == ["last_tie_break must be one of latest_received, earliest_received"]


def test_sync_validation_option_rejects_unknown_meter() -> None:
    config = EmulatorConfig(sync_meter_event_validation=True, require_known_customer=True)
    with EmulatorServer(config) as server:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": server.url})
        support.meter(client)
        with pytest.raises(stripe.InvalidRequestError):
            support.send(client, "cus_a", "1", event_name="unknown")
        with pytest.raises(stripe.InvalidRequestError):
            support.send(client, "cus_unknown", "1")
        support.send(client, support.customer(client).id, "1")


def test_count_and_last_formulas(stripe_client: stripe.StripeClient) -> None:
    count = support.meter(stripe_client, "logins", "count")
    last = support.meter(stripe_client, "seats", "last")
    cus = support.customer(stripe_client)
    now = int(time.time())
    stripe_client.v1.billing.meter_events.create(
        {"event_name": "logins", "payload": {"stripe_customer_id": cus.id}}
    )
    support.send(stripe_client, cus.id, "9", event_name="logins")
    support.send(stripe_client, cus.id, "3", event_name="seats", timestamp=now - 5)
    support.send(stripe_client, cus.id, "7", event_name="seats", timestamp=now - 10)
    window = {
        "customer": cus.id,
        "start_time": now // 60 * 60 - 600,
        "end_time": now // 60 * 60 + 60,
    }
    summaries = stripe_client.v1.billing.meters.event_summaries
    assert summaries.list(count.id, window).data[0].aggregated_value == 2.0
    assert summaries.list(last.id, window).data[0].aggregated_value == 3.0


def test_custom_payload_keys(stripe_client: stripe.StripeClient) -> None:
    meter = stripe_client.v1.billing.meters.create(
        {
            "display_name": "Tokens",
            "event_name": "tokens",
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": "account", "type": "by_id"},
            "value_settings": {"event_payload_key": "total"},
        }
    )
    stripe_client.v1.billing.meter_events.create(
        {"event_name": "tokens", "payload": {"account": "cus_1", "total": "11"}}
    )
    start = _hour_start()
    data = stripe_client.v1.billing.meters.event_summaries.list(
        meter.id, {"customer": "cus_1", "start_time": start, "end_time": start + 3600}
    ).data
    assert data[0].aggregated_value == 11.0


def test_adjustment_cancels_within_24_hours(stripe_emulator: StripeEmulatorHandle) -> None:
    client = stripe_emulator.client()
    meter = support.meter(client)
    cus = support.customer(client)
    support.send(client, cus.id, "5", identifier="keep")
    support.send(client, cus.id, "7", identifier="drop")
    adjustment = client.v1.billing.meter_event_adjustments.create(
        {"event_name": "api_calls", "type": "cancel", "cancel": {"identifier": "drop"}}
    )
    assert adjustment.cancel.identifier == "drop" and adjustment.type == "cancel"
    start = _hour_start()
    window = {"customer": cus.id, "start_time": start - DAY, "end_time": start + 3600}
    data = client.v1.billing.meters.event_summaries.list(meter.id, window).data
    assert data[0].aggregated_value == 5.0
    stripe_emulator.control.advance_clock(DAY + 60)
    with pytest.raises(stripe.InvalidRequestError) as late:
        client.v1.billing.meter_event_adjustments.create(
            {"event_name": "api_calls", "type": "cancel", "cancel": {"identifier": "keep"}}
        )
    assert late.value.code == "meter_event_adjustment_window_expired"


@pytest.mark.parametrize(
    "params",
    [
        {"event_name": "api_calls", "type": "cancel", "cancel": {"identifier": "unknown"}},
        {"event_name": "other", "type": "cancel", "cancel": {"identifier": "known"}},
        {"event_name": "api_calls", "type": "cancel"},
        {"event_name": "api_calls", "type": "amend", "cancel": {"identifier": "known"}},
    ],
)
def test_adjustment_errors(stripe_client: stripe.StripeClient, params: dict) -> None:
    support.meter(stripe_client)
    support.send(stripe_client, "cus_a", "1", identifier="known")
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.billing.meter_event_adjustments.create(params)


def test_hourly_summaries_auto_paginate(stripe_emulator: StripeEmulatorHandle) -> None:
    client = stripe_emulator.client()
    meter = support.meter(client)
    cus = support.customer(client)
    start = _hour_start() - 30 * 3600
    for hour in range(30):
        support.send(client, cus.id, str(hour + 1), timestamp=start + hour * 3600 + 5)
    params = {
        "customer": cus.id,
        "start_time": start,
        "end_time": start + 30 * 3600,
        "value_grouping_window": "hour",
        "limit": 7,
    }
    page = client.v1.billing.meters.event_summaries.list(meter.id, params)
    assert page.has_more is True and len(page.data) == 7
    summaries = list(page.auto_paging_iter())
    assert len(summaries) == 30
    assert summaries[0].start_time == start + 29 * 3600
    assert sorted(s.aggregated_value for s in summaries) == [float(v) for v in range(1, 31)]
    assert all(s.end_time - s.start_time == 3600 for s in summaries)


def test_empty_windows_are_omitted_and_daily_grouping(stripe_client: stripe.StripeClient) -> None:
    meter = support.meter(stripe_client)
    cus = support.customer(stripe_client)
    day = int(time.time()) // DAY * DAY
    support.send(stripe_client, cus.id, "4", timestamp=int(time.time()) - 1)
    data = stripe_client.v1.billing.meters.event_summaries.list(
        meter.id,
        {
            "customer": cus.id,
            "start_time": day - 3 * DAY,
            "end_time": day + DAY,
            "value_grouping_window": "day",
        },
    ).data
    assert [(s.start_time, s.aggregated_value) for s in data] == [(day, 4.0)]


@pytest.mark.parametrize(
    ("start_offset", "end_offset", "window", "param"),
    [
        (1, 60, None, "start_time"),
        (0, 61, None, "end_time"),
        (60, 3600, "hour", "start_time"),
        (0, 3600, "day", "end_time"),
        (3600, 0, None, "end_time"),
        (0, 3600, "week", "value_grouping_window"),
    ],
)
def test_summary_alignment_rules(
    stripe_client: stripe.StripeClient,
    start_offset: int,
    end_offset: int,
    window: str | None,
    param: str,
) -> None:
    meter = support.meter(stripe_client)
    day = int(time.time()) // DAY * DAY - DAY
    params = {"customer": "cus_a", "start_time": day + start_offset, "end_time": day + end_offset}
    if window:
        params["value_grouping_window"] = window
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.billing.meters.event_summaries.list(meter.id, params)
    assert caught.value.param == param


def test_summaries_need_customer_and_times(stripe_client: stripe.StripeClient) -> None:
    meter = support.meter(stripe_client)
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.billing.meters.event_summaries.list(
            meter.id, {"customer": "c", "start_time": 0}
        )
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.billing.meters.event_summaries.list(
            meter.id, {"customer": "c", "end_time": 60}
        )
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.billing.meters.event_summaries.list("mtr_missing", {"customer": "c"})


def test_processing_delay_hides_recent_events() -> None:
    with EmulatorServer(EmulatorConfig(meter_processing_delay=120)) as server:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": server.url})
        control = EmulatorControl(server.url)
        meter = support.meter(client)
        support.send(client, "cus_a", "3", identifier="late")
        support.send(client, "cus_a", "4", identifier="kept")
        start = _hour_start()
        window = {"customer": "cus_a", "start_time": start - 3600, "end_time": start + 3600}
        assert client.v1.billing.meters.event_summaries.list(meter.id, window).data == []
        adjustment = client.v1.billing.meter_event_adjustments.create(
            {"event_name": "api_calls", "type": "cancel", "cancel": {"identifier": "late"}}
        )
        assert adjustment.status == "pending"
        control.advance_clock(121)
        data = client.v1.billing.meters.event_summaries.list(meter.id, window).data
        assert [s.aggregated_value for s in data] == [4.0]
        control.close()
