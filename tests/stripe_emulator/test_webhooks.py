"""Signed webhook deliveries verified with stripe.Webhook.construct_event."""

from __future__ import annotations

import socket

import pytest
import stripe

from stripe_emulator import EmulatorControlError
from tests.fixtures.stripe import StripeEmulatorHandle

from . import support
from .receiver import WebhookReceiver

SECRET = "whsec_test_meterline"


def test_deliveries_are_signed(stripe_emulator: StripeEmulatorHandle) -> None:
    client = stripe_emulator.client()
    with WebhookReceiver() as receiver:
        endpoint = stripe_emulator.control.add_webhook_endpoint(receiver.url, SECRET)
        assert endpoint["secret"] == SECRET
        cus = support.customer(client)
        delivery = receiver.wait_for(1)[0]
    event = stripe.Webhook.construct_event(
        delivery["body"], delivery["headers"]["Stripe-Signature"], SECRET
    )
    assert event.type == "customer.created" and event.data.object.id == cus.id
    assert event.api_version == "2026-10-28.endive" and event.livemode is False
    assert event.request.idempotency_key
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            delivery["body"], delivery["headers"]["Stripe-Signature"], "whsec_wrong"
        )
    listed = client.v1.events.list({"type": "customer.created"})
    assert listed.data[0].id == event.id
    assert client.v1.events.retrieve(event.id).type == "customer.created"


def test_generated_secret_and_rotation(stripe_emulator: StripeEmulatorHandle) -> None:
    with WebhookReceiver() as receiver:
        endpoint = stripe_emulator.control.add_webhook_endpoint(
            receiver.url, extra_secrets=["whsec_old"]
        )
        assert endpoint["secret"].startswith("whsec_")
        support.customer(stripe_emulator.client())
        delivery = receiver.wait_for(1)[0]
    header = delivery["headers"]["Stripe-Signature"]
    assert header.count("v1=") == 2
    for secret in (endpoint["secret"], "whsec_old"):
        stripe.Webhook.construct_event(delivery["body"], header, secret)


def test_signature_uses_the_emulator_clock(stripe_emulator: StripeEmulatorHandle) -> None:
    stripe_emulator.control.advance_clock(7200)
    with WebhookReceiver() as receiver:
        stripe_emulator.control.add_webhook_endpoint(receiver.url, SECRET)
        support.customer(stripe_emulator.client())
        delivery = receiver.wait_for(1)[0]
    stamp = int(delivery["headers"]["Stripe-Signature"].split(",")[0][2:])
    assert stamp >= int(stripe_emulator.control.now()) - 5
    stripe.Webhook.construct_event(
        delivery["body"], delivery["headers"]["Stripe-Signature"], SECRET
    )


def test_non_2xx_is_retried_with_backoff(stripe_emulator: StripeEmulatorHandle) -> None:
    with WebhookReceiver(statuses=[500, 503]) as receiver:
        stripe_emulator.control.add_webhook_endpoint(receiver.url, SECRET)
        support.customer(stripe_emulator.client())
        attempts = stripe_emulator.control.wait_for_deliveries()
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, 500), (2, 503), (3, 200)]
    assert len(receiver.received) == 3


def test_gives_up_after_max_attempts(stripe_emulator: StripeEmulatorHandle) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stripe_emulator.control.add_webhook_endpoint(f"http://127.0.0.1:{port}/gone", SECRET)
    support.customer(stripe_emulator.client())
    attempts = stripe_emulator.control.wait_for_deliveries()
    assert len(attempts) == 4 and not any(a["succeeded"] for a in attempts)
    assert attempts[0]["error"]


def test_enabled_events_filter(stripe_emulator: StripeEmulatorHandle) -> None:
    client = stripe_emulator.client()
    with WebhookReceiver() as receiver:
        stripe_emulator.control.add_webhook_endpoint(
            receiver.url, SECRET, enabled_events=["customer.deleted"]
        )
        cus = support.customer(client)
        client.v1.customers.delete(cus.id)
        stripe_emulator.control.wait_for_deliveries()
    assert len(receiver.received) == 1


def test_duplicates_and_out_of_order(stripe_emulator: StripeEmulatorHandle) -> None:
    client = stripe_emulator.client()
    stripe_emulator.control.webhook_options(duplicate_rate=1.0, out_of_order_jitter_seconds=0.3)
    with WebhookReceiver() as receiver:
        stripe_emulator.control.add_webhook_endpoint(receiver.url, SECRET)
        created = [support.customer(client, f"o{i}@x.io").id for i in range(6)]
        stripe_emulator.control.wait_for_deliveries()
    received = [
        stripe.Webhook.construct_event(d["body"], d["headers"]["Stripe-Signature"], SECRET)
        for d in receiver.received
    ]
    ids = [e.data.object.id for e in received]
    assert sorted(ids) == sorted(created * 2)
    first_seen = list(dict.fromkeys(ids))
    assert first_seen != created


def test_subscription_lifecycle_events_are_delivered(stripe_emulator: StripeEmulatorHandle) -> None:
    client = stripe_emulator.client()
    meter = support.meter(client)
    base, _ = support.metered_plan(client, meter.id)
    with WebhookReceiver() as receiver:
        stripe_emulator.control.add_webhook_endpoint(receiver.url, SECRET)
        cus = support.customer(client)
        sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": base.id}]})
        stripe_emulator.control.fail_payment(sub.id)
        stripe_emulator.control.wait_for_deliveries()
    types = {
        stripe.Webhook.construct_event(d["body"], d["headers"]["Stripe-Signature"], SECRET).type
        for d in receiver.received
    }
    assert {
        "customer.subscription.created",
        "invoice.payment_failed",
        "customer.subscription.updated",
        "invoice.finalized",
    } <= types


def test_endpoint_control_errors(stripe_emulator: StripeEmulatorHandle) -> None:
    control = stripe_emulator.control
    with pytest.raises(EmulatorControlError):
        control.add_webhook_endpoint("ftp://nowhere")
    with pytest.raises(EmulatorControlError):
        control.webhook_options(duplicate_rate=2)
    with pytest.raises(EmulatorControlError):
        control.webhook_options(color=1)
    with pytest.raises(EmulatorControlError) as caught:
        control._call("DELETE", "/webhook_endpoints/we_missing")
    assert caught.value.status == 404
