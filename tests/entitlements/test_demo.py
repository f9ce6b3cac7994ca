"""The `make run` demo step against the API fixture: Free hits its limit, an upgrade lifts it."""

from __future__ import annotations

import pytest

from meterline_devstack import demo_entitlements
from meterline_devstack.demo_context import DemoContext
from tests.entitlements.conftest import WEBHOOK_SECRET, Api

pytestmark = pytest.mark.integration


class _Stack:
    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls


def test_demo_step(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METERLINE_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    stack = _Stack({"entitlements": api.url, "stripe": api.stripe.url})
    ctx = DemoContext(stack, "acme", api.tenant_id, dict(api.keys))  # type: ignore[arg-type]
    demo_entitlements.run(ctx)
    printed = capsys.readouterr().out
    assert "consume 50 -> granted=True" in printed
    assert "consume 1  -> granted=False (limit_exceeded)" in printed
    assert "webhook applied: plan power" in printed
    assert "after the upgrade: consume 1 -> within_limit (limit 100000)" in printed
