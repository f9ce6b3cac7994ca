"""Serving, persistence, configuration and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import stripe

from stripe_emulator import (
    EmulatorConfig,
    EmulatorControl,
    EmulatorServer,
    create_app,
)
from stripe_emulator.__main__ import main, parse_args
from tests.fixtures.stripe import StripeEmulatorHandle

from . import support


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "stripe.json"
    config = EmulatorConfig(state_file=state)
    with EmulatorServer(config) as server:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": server.url})
        support.meter(client)
        cus = support.customer(client)
        support.send(client, cus.id, "3", identifier="persisted")
        with EmulatorControl(server.url) as control:
            control.advance_clock(3600)
    assert state.exists()
    with EmulatorServer(config) as server:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": server.url})
        assert client.v1.customers.retrieve(cus.id).email == cus.email
        with pytest.raises(stripe.InvalidRequestError):
            support.send(client, cus.id, "3", identifier="persisted")
        with EmulatorControl(server.url) as control:
            assert control.health()["ok"] is True
            assert control.now() - control.health()["now"] < 5
            assert server.emulator.clock.offset >= 3600


def test_invalid_configuration_is_reported_whole() -> None:
    with pytest.raises(ValueError, match=r"meter_processing_delay.*session_ttl_seconds"):
        create_app(EmulatorConfig(meter_processing_delay=-1, session_ttl_seconds=0))


def test_server_url_requires_start() -> None:
    server = EmulatorServer()
    with pytest.raises(RuntimeError):
        _ = server.url


def test_cli_arguments() -> None:
    args = parse_args(
        [
            "--port",
            "12999",
            "--seed",
            "4",
            "--meter-processing-delay",
            "2.5",
            "--state-file",
            "/tmp/x.json",
        ]
    )
    assert (args.host, args.port, args.seed, args.meter_processing_delay) == (
        "127.0.0.1",
        12999,
        4,
        2.5,
    )
    assert main(["--meter-processing-delay", "-1"]) == 2


def test_reset_clears_state(stripe_emulator: StripeEmulatorHandle) -> None:
    client = stripe_emulator.client()
    support.customer(client)
    stripe_emulator.control.advance_clock(100)
    stripe_emulator.control.set_faults(rate_429=0.5)
    stripe_emulator.control.reset()
    assert client.v1.customers.list().data == []
    assert stripe_emulator.control.faults()["rate_429"] == 0
    assert stripe_emulator.emulator.clock.offset == 0


def test_control_rejects_bad_json(stripe_emulator: StripeEmulatorHandle) -> None:
    import httpx

    response = httpx.post(stripe_emulator.url + "/_emulator/clock/advance", content=b"[1]")
    assert response.status_code == 400
    response = httpx.post(stripe_emulator.url + "/_emulator/clock/advance", content=b"{x")
    assert response.status_code == 400
    response = httpx.post(stripe_emulator.url + "/_emulator/clock/advance", json={"seconds": "1"})
    assert response.status_code == 400
