"""Seeded fault injection: 429s, 500s before and after processing, latency, dropped events."""

from __future__ import annotations

import time

import pytest
import stripe

from stripe_emulator import EmulatorControlError
from stripe_emulator.faults import FaultInjector, FaultSettings
from tests.fixtures.stripe import StripeEmulatorHandle

from . import support


def _fates(settings: FaultSettings, n: int = 200) -> list[str | None]:
    injector = FaultInjector(settings)
    return [injector.decide("POST", "/v1/billing/meter_events") for _ in range(n)]


def test_same_seed_same_faults() -> None:
    settings = FaultSettings(seed=7, rate_429=0.2, rate_500=0.1, rate_500_after=0.05)
    assert _fates(settings) == _fates(settings)
    assert _fates(settings) != _fates(FaultSettings(seed=8, rate_429=0.2, rate_500=0.1))
    fates = _fates(settings, 2000)
    assert 300 < fates.count("rate_limited") < 500
    assert 120 < fates.count("server_error") < 280


def test_paths_limit_where_faults_apply() -> None:
    injector = FaultInjector(FaultSettings(rate_429=1.0, paths=("/v1/billing",)))
    assert injector.decide("POST", "/v1/customers") is None
    assert injector.decide("POST", "/v1/billing/meter_events") == "rate_limited"


def test_invalid_settings_are_reported_together(stripe_emulator: StripeEmulatorHandle) -> None:
    with pytest.raises(EmulatorControlError) as caught:
        stripe_emulator.control.set_faults(rate_429=2, latency_ms=-1, bogus=1)
    message = caught.value.body["error"]["message"]
    assert "rate_429" in message and "latency_ms" in message and "bogus" in message


def test_429_reaches_the_sdk_as_rate_limit_error(stripe_emulator: StripeEmulatorHandle) -> None:
    stripe_emulator.control.set_faults(rate_429=1.0)
    client = stripe_emulator.client(max_network_retries=2)
    with pytest.raises(stripe.RateLimitError):
        support.customer(client)
    assert len(stripe_emulator.control.requests(status="429")) == 1


def test_500_before_processing_is_retried_by_the_sdk(
    stripe_emulator: StripeEmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stripe._http_client.HTTPClient, "INITIAL_DELAY", 0.0)
    stripe_emulator.control.set_faults(seed=3, rate_500=0.5, paths=["/v1/customers"])
    client = stripe_emulator.client(max_network_retries=10)
    created = {support.customer(client, f"r{i}@x.io").id for i in range(4)}
    stripe_emulator.control.clear_faults()
    assert len(client.v1.customers.list().data) == 4 == len(created)
    assert len(stripe_emulator.control.requests(status="500")) >= 1


def test_500_after_processing_is_saved_under_the_key(stripe_emulator: StripeEmulatorHandle) -> None:
    client = stripe_emulator.client()
    support.meter(client)
    stripe_emulator.control.set_faults(rate_500_after=1.0, paths=["/v1/billing/meter_events"])
    options = {"idempotency_key": "lost-answer"}
    params = {
        "event_name": "api_calls",
        "identifier": "hour-7",
        "payload": {"stripe_customer_id": "cus_a", "value": "3"},
    }
    for _ in range(2):
        with pytest.raises(stripe.APIError) as caught:
            client.v1.billing.meter_events.create(params, options=options)  # type: ignore[arg-type]
        assert caught.value.http_status == 500
    stripe_emulator.control.clear_faults()
    with pytest.raises(stripe.InvalidRequestError) as dup:
        client.v1.billing.meter_events.create(params)
    assert dup.value.headers["Stripe-Should-Retry"] == "false"
    assert [e["status"] for e in stripe_emulator.control.meter_events()] == ["accepted"]


def test_latency_is_added(stripe_emulator: StripeEmulatorHandle) -> None:
    stripe_emulator.control.set_faults(latency_ms=150)
    client = stripe_emulator.client()
    started = time.monotonic()
    support.customer(client)
    assert time.monotonic() - started >= 0.15


def test_dropped_meter_events_are_deterministic_and_repairable(
    stripe_emulator: StripeEmulatorHandle,
) -> None:
    client = stripe_emulator.client()
    meter = support.meter(client)

    def run() -> list[str]:
        stripe_emulator.control.set_faults(seed=11, drop_meter_events=0.3)
        for i in range(20):
            support.send(
                client,
                "cus_d",
                "1",
                identifier=f"{len(stripe_emulator.control.meter_events())}-{i}",
            )
        return [r["status"] for r in stripe_emulator.control.meter_events()[-20:]]

    first, second = run(), run()
    assert first == second and 0 < first.count("dropped") < 20
    dropped = stripe_emulator.control.meter_events(status="dropped")[0]
    stripe_emulator.control.clear_faults()
    support.send(client, "cus_d", "1", identifier=dropped["identifier"])
    start = int(time.time()) // 3600 * 3600
    total = (
        client.v1.billing.meters.event_summaries.list(
            meter.id, {"customer": "cus_d", "start_time": start - 3600, "end_time": start + 3600}
        )
        .data[0]
        .aggregated_value
    )
    assert total == 40 - 2 * first.count("dropped") + 1
