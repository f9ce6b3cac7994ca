"""v2 billing: meter event sessions, the stream, v2 meter events and adjustments."""

from __future__ import annotations

import time

import httpx
import pytest
import stripe

from stripe_emulator.clock import to_rfc3339
from tests.fixtures.stripe import StripeEmulatorHandle

from . import support


def _event(identifier: str, value: str = "1", **extra: object) -> dict:
    return {
        "event_name": "api_calls",
        "identifier": identifier,
        "payload": {"stripe_customer_id": "cus_a", "value": value},
        **extra,
    }


def _total(client: stripe.StripeClient, meter_id: str) -> float:
    start = int(time.time()) // 3600 * 3600
    data = client.v1.billing.meters.event_summaries.list(
        meter_id, {"customer": "cus_a", "start_time": start - 3600, "end_time": start + 3600}
    ).data
    return sum(s.aggregated_value for s in data)


def test_session_and_stream(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    meter = support.meter(stripe_client)
    session = stripe_client.v2.billing.meter_event_session.create()
    assert session.object == "v2.billing.meter_event_session"
    assert session.expires_at > session.created
    stripe_client.v2.billing.meter_event_stream.create(
        {
            "events": [
                _event("s1", "2"),
                _event("s2", "3", timestamp=to_rfc3339(time.time() - 40 * 86_400)),
            ]
        },
        options={"api_key": session.authentication_token},
    )
    records = {r["identifier"]: r for r in stripe_emulator.control.meter_events(source="stream")}
    assert records["s1"]["status"] == "accepted"
    assert records["s2"]["status"] == "invalid" and "past" in records["s2"]["error"]
    assert _total(stripe_client, meter.id) == 2.0


def test_stream_validates_asynchronously(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    support.meter(stripe_client)
    token = stripe_client.v2.billing.meter_event_session.create().authentication_token
    bad = [
        _event("ok"),
        _event("ok"),
        _event("digits", "1234567890.123456"),
        {
            "event_name": "api_calls",
            "identifier": "stamp",
            "timestamp": "yesterday",
            "payload": {"stripe_customer_id": "cus_a", "value": "1"},
        },
    ]
    stripe_client.v2.billing.meter_event_stream.create({"events": bad}, options={"api_key": token})
    statuses = [(r["identifier"], r["status"]) for r in stripe_emulator.control.meter_events()]
    assert statuses == [
        ("ok", "accepted"),
        ("ok", "invalid"),
        ("digits", "invalid"),
        ("stamp", "invalid"),
    ]


def test_expired_token_maps_to_temporary_session_expired(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    support.meter(stripe_client)
    token = stripe_client.v2.billing.meter_event_session.create().authentication_token
    stripe_emulator.control.advance_clock(15 * 60 + 1)
    with pytest.raises(stripe.TemporarySessionExpiredError) as caught:
        stripe_client.v2.billing.meter_event_stream.create(
            {"events": [_event("late")]}, options={"api_key": token}
        )
    assert caught.value.http_status == 401
    assert caught.value.code == "billing_meter_event_session_expired"
    fresh = stripe_client.v2.billing.meter_event_session.create().authentication_token
    stripe_client.v2.billing.meter_event_stream.create(
        {"events": [_event("late")]}, options={"api_key": fresh}
    )


def test_expire_sessions_control(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    token = stripe_client.v2.billing.meter_event_session.create().authentication_token
    assert stripe_emulator.control.expire_sessions() == 1
    with pytest.raises(stripe.TemporarySessionExpiredError):
        stripe_client.v2.billing.meter_event_stream.create(
            {"events": [_event("x")]}, options={"api_key": token}
        )


def test_stream_rejects_unknown_token_and_secret_keys(stripe_client: stripe.StripeClient) -> None:
    for token in ("mes_tok_unknown", "sk_test_meterline_emulator"):
        with pytest.raises(stripe.AuthenticationError):
            stripe_client.v2.billing.meter_event_stream.create(
                {"events": [_event("x")]}, options={"api_key": token}
            )


def test_stream_batch_limits(stripe_client: stripe.StripeClient) -> None:
    token = stripe_client.v2.billing.meter_event_session.create().authentication_token
    too_many = [_event(f"e{i}") for i in range(101)]
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v2.billing.meter_event_stream.create(
            {"events": too_many}, options={"api_key": token}
        )
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v2.billing.meter_event_stream.create(
            {"events": []}, options={"api_key": token}
        )


def test_stream_answers_empty_json_object(stripe_emulator: StripeEmulatorHandle) -> None:
    client = stripe_emulator.client()
    token = client.v2.billing.meter_event_session.create().authentication_token
    response = httpx.post(
        stripe_emulator.url + "/v2/billing/meter_event_stream",
        json={"events": [_event("raw")]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200 and response.json() == {}
    bad = httpx.post(
        stripe_emulator.url + "/v2/billing/meter_event_stream",
        content=b"{nope",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert bad.status_code == 400


def test_v2_meter_events_validate_synchronously(stripe_client: stripe.StripeClient) -> None:
    meter = support.meter(stripe_client)
    created = stripe_client.v2.billing.meter_events.create(_event("v2-1", "4"))
    assert created.identifier == "v2-1" and created.object == "v2.billing.meter_event"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v2.billing.meter_events.create(_event("v2-1", "4"))
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v2.billing.meter_events.create(
            _event("v2-2", timestamp=to_rfc3339(time.time() + 3600))
        )
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v2.billing.meter_events.create(_event("v2-3", timestamp="soon"))
    assert _total(stripe_client, meter.id) == 4.0


def test_v2_adjustment(stripe_client: stripe.StripeClient) -> None:
    meter = support.meter(stripe_client)
    stripe_client.v2.billing.meter_events.create(_event("gone", "9"))
    adjustment = stripe_client.v2.billing.meter_event_adjustments.create(
        {"event_name": "api_calls", "type": "cancel", "cancel": {"identifier": "gone"}}
    )
    assert adjustment.id.startswith("mea_") and adjustment.status == "complete"
    assert _total(stripe_client, meter.id) == 0.0
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v2.billing.meter_event_adjustments.create(
            {"event_name": "api_calls", "type": "cancel"}
        )
