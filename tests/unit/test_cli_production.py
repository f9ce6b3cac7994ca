"""The `meterline` command of a production install: the dev tools are absent and it says so."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from meterline_ops.main import app

DEV_MODULES = [
    "meterline_devstack",
    "meterline_devstack.demo",
    "meterline_devstack.stack",
    "stripe_emulator",
    "stripe_emulator.__main__",
]


@pytest.fixture
def production_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports of the dev stack and the emulator fail, as in the production wheel."""
    for name in DEV_MODULES:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize(
    ("args", "what"),
    [(["dev", "up", "--no-demo"], "the dev stack"), (["stripe-emulator"], "the Stripe emulator")],
)
def test_a_dev_command_without_the_dev_tools_says_how_to_install_them(
    production_install: None, args: list[str], what: str
) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert f"{what} is a development tool" in result.output
    assert "pip install -e ./devstack" in result.output
