"""No default secrets outside the dev stack (issue 21, item 8): a configuration pointing at real
Stripe without its own API key and webhook secret is refused by `meterline config check` and at
the entitlements API's start-up; only the emulator runs without them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meterline.errors import ConfigError
from meterline.settings import load_settings
from meterline_devstack.stack import DEV_WEBHOOK_SECRET, DevStack

BACKING = {
    "METERLINE_HOME": "/nonexistent",
    "METERLINE_DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
    "METERLINE_REDIS_URL": "redis://127.0.0.1:1/0",
    "METERLINE_KAFKA_BOOTSTRAP": "127.0.0.1:1",
}
REAL = {**BACKING, "METERLINE_STRIPE_API_BASE": "https://api.stripe.com"}


def run(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_check_refuses_real_stripe_without_its_secrets() -> None:
    result = run("meterline_ops.main", "config", "check", env=REAL)
    assert result.returncode != 0, result.stdout
    assert "METERLINE_STRIPE_WEBHOOK_SECRET is not set" in result.stderr
    assert "METERLINE_STRIPE_API_KEY is not set" in result.stderr


def test_the_entitlements_api_refuses_to_start_without_a_webhook_secret() -> None:
    result = run("entitlements_api", env={**REAL, "METERLINE_STRIPE_API_KEY": "rk_live_x"})
    assert result.returncode == 2
    assert "METERLINE_STRIPE_WEBHOOK_SECRET is not set" in result.stderr


@pytest.mark.parametrize(
    "base", ["https://api.stripe.com", "http://api.stripe.com", "https://stripe.internal:8443"]
)
def test_the_published_dev_secret_is_refused_for_real_stripe(base: str) -> None:
    env = {
        **BACKING,
        "METERLINE_STRIPE_API_BASE": base,
        "METERLINE_STRIPE_API_KEY": "rk_live_x",
        "METERLINE_STRIPE_WEBHOOK_SECRET": "whsec_meterline_dev",
    }
    with pytest.raises(ConfigError, match="published development secret"):
        load_settings(env)


def test_real_stripe_with_its_own_secrets_is_valid() -> None:
    env = {
        **REAL,
        "METERLINE_STRIPE_API_KEY": "rk_live_x",
        "METERLINE_STRIPE_WEBHOOK_SECRET": "whsec_own",
    }
    assert load_settings(env).stripe.webhook_secret == "whsec_own"


@pytest.mark.parametrize("base", ["http://127.0.0.1:12111", "http://stripe-emulator:12111"])
def test_the_emulator_needs_no_secret_and_has_no_default(base: str) -> None:
    stripe = load_settings({**BACKING, "METERLINE_STRIPE_API_BASE": base}).stripe
    assert stripe.emulated and stripe.webhook_secret is None


def test_the_dev_stack_sets_its_own_secret_only_for_its_own_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METERLINE_STRIPE_WEBHOOK_SECRET", raising=False)
    urls = {"postgres": "postgresql://x/y", "redis": "redis://x", "kafka": "x:1"}
    theirs = DevStack(tmp_path, urls={**urls, "stripe": "https://api.stripe.com"})
    assert "METERLINE_STRIPE_WEBHOOK_SECRET" not in theirs.environment()
    ours = DevStack(tmp_path, urls={**urls, "stripe": "http://127.0.0.1:12111"})
    ours.processes["stripe"] = object()  # type: ignore[assignment]
    assert ours.environment()["METERLINE_STRIPE_WEBHOOK_SECRET"] == DEV_WEBHOOK_SECRET
