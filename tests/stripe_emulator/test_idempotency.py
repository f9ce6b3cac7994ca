"""Idempotency-Key replay, mismatch and concurrency; Request-Id on every response."""

from __future__ import annotations

import threading

import httpx
import pytest
import stripe

from tests.fixtures.stripe import StripeEmulatorHandle

from . import support


def test_replay_returns_the_first_answer(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    options = {"idempotency_key": "create-cus-1"}
    first = stripe_client.v1.customers.create({"email": "i@x.io"}, options=options)  # type: ignore[arg-type]
    second = stripe_client.v1.customers.create({"email": "i@x.io"}, options=options)  # type: ignore[arg-type]
    assert first.id == second.id
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert len(stripe_client.v1.customers.list().data) == 1
    replays = [r for r in stripe_emulator.control.requests(method="POST") if r.get("replayed")]
    assert len(replays) == 1


def test_meter_event_replay_does_not_hit_identifier_dedupe(
    stripe_client: stripe.StripeClient,
) -> None:
    support.meter(stripe_client)
    params = {
        "event_name": "api_calls",
        "identifier": "h1",
        "payload": {"stripe_customer_id": "cus_a", "value": "1"},
    }
    options = {"idempotency_key": "report-h1"}
    stripe_client.v1.billing.meter_events.create(params, options=options)  # type: ignore[arg-type]
    again = stripe_client.v1.billing.meter_events.create(params, options=options)  # type: ignore[arg-type]
    assert again.last_response.headers["Idempotent-Replayed"] == "true"


def test_key_reused_with_other_parameters(stripe_client: stripe.StripeClient) -> None:
    options = {"idempotency_key": "same-key"}
    stripe_client.v1.customers.create({"email": "a@x.io"}, options=options)  # type: ignore[arg-type]
    with pytest.raises(stripe.IdempotencyError) as caught:
        stripe_client.v1.customers.create({"email": "b@x.io"}, options=options)  # type: ignore[arg-type]
    assert caught.value.http_status == 400


def test_validation_errors_are_not_saved(stripe_client: stripe.StripeClient) -> None:
    options = {"idempotency_key": "fix-me"}
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.billing.meters.create(
            {"display_name": "x", "event_name": "e", "default_aggregation": {"formula": "avg"}},
            options=options,  # type: ignore[arg-type]
        )
    fixed = stripe_client.v1.billing.meters.create(
        {"display_name": "x", "event_name": "e", "default_aggregation": {"formula": "sum"}},
        options={"idempotency_key": "fix-me"},  # type: ignore[arg-type]
    )
    assert fixed.status == "active"


def test_key_too_long(stripe_emulator: StripeEmulatorHandle) -> None:
    response = httpx.post(
        stripe_emulator.url + "/v1/customers",
        data={"email": "x@y.z"},
        headers={
            "Authorization": f"Bearer {stripe_emulator.api_key}",
            "Idempotency-Key": "k" * 256,
        },
    )
    assert response.status_code == 400


def test_concurrent_use_of_a_key_is_409(stripe_emulator: StripeEmulatorHandle) -> None:
    stripe_emulator.control.set_faults(latency_ms=300)
    headers = {"Authorization": f"Bearer {stripe_emulator.api_key}", "Idempotency-Key": "busy"}
    results: list[int] = []

    def post() -> None:
        response = httpx.post(
            stripe_emulator.url + "/v1/customers", data={"email": "c@x.io"}, headers=headers
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 409]


def test_keys_are_scoped_per_api_key(stripe_emulator: StripeEmulatorHandle) -> None:
    options = {"idempotency_key": "shared"}
    a = stripe_emulator.client(api_key="sk_test_a").v1.customers.create(options=options)  # type: ignore[arg-type]
    b = stripe_emulator.client(api_key="sk_test_b").v1.customers.create(options=options)  # type: ignore[arg-type]
    assert a.id != b.id


def test_every_response_has_a_request_id(stripe_client: stripe.StripeClient) -> None:
    customer = support.customer(stripe_client)
    assert customer.last_response.request_id.startswith("req_")
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.customers.retrieve("cus_missing")
    assert caught.value.request_id.startswith("req_")
