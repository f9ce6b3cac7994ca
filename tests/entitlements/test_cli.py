"""`meterline catalog apply`, `customers create`, `grants add` against real Postgres and the
emulator."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from meterline.postgres import open_pool
from meterline.tenants import PostgresTenantRepository
from meterline_ops.main import app
from tests.entitlements.catalogs import EXAMPLE
from tests.fixtures.stripe import StripeEmulatorHandle

pytestmark = pytest.mark.integration


def test_catalog_apply_customers_and_grants(
    pg_conninfo: str,
    stripe_emulator: StripeEmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: object,
) -> None:
    monkeypatch.setenv("METERLINE_DATABASE_URL", pg_conninfo)
    monkeypatch.setenv("METERLINE_STRIPE_API_BASE", stripe_emulator.url)
    monkeypatch.setenv("METERLINE_STRIPE_API_KEY", stripe_emulator.api_key)
    with open_pool(pg_conninfo, max_size=1) as pool:
        PostgresTenantRepository(pool).create_tenant("acme")
    runner = CliRunner()
    first = runner.invoke(app, ["catalog", "apply", str(EXAMPLE), "--tenant", "acme"])
    assert first.exit_code == 0, first.output
    assert "+ meter api_calls" in first.output and "stripe: created" in first.output
    again = runner.invoke(app, ["catalog", "apply", str(EXAMPLE), "--tenant", "acme"])
    assert again.exit_code == 0 and "unchanged" in again.output
    assert "stripe: created" not in again.output
    bad = tmp_path / "bad.yaml"  # type: ignore[operator]
    bad.write_text("meters:\n  - key: Bad\n    aggregation: avg\n    extra: 1\n")
    failed = runner.invoke(app, ["catalog", "apply", str(bad), "--tenant", "acme"])
    assert failed.exit_code == 2
    assert "meters[0].key" in failed.output and "meters[0].aggregation" in failed.output
    made = runner.invoke(app, ["customers", "create", "c1", "--tenant", "acme", "--stripe"])
    assert made.exit_code == 0 and "stripe customer cus_" in made.output, made.output
    grant = runner.invoke(
        app,
        ["grants", "add", "c1", "--tenant", "acme", "--feature", "api_calls", "--amount", "100"],
    )
    assert grant.exit_code == 0 and "credit 100 api_calls" in grant.output, grant.output
    unknown = runner.invoke(
        app, ["grants", "add", "c1", "--tenant", "acme", "--feature", "nope", "--amount", "1"]
    )
    assert unknown.exit_code == 2
