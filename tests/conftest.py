"""Test session set-up: fixtures live in tests/fixtures and are loaded as plugins.

Tests marked `reliability` are full-size measurements: they run only when a marker expression
names them (`make reliability` runs `-m reliability`), never in `make test`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The processes the tests start import this checkout, the dev stack's distribution included.
ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), str(ROOT / "devstack"), *filter(None, [os.environ.get("PYTHONPATH")])]
)

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.stripe",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "reliability" in (config.option.markexpr or ""):
        return
    kept = [item for item in items if item.get_closest_marker("reliability") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
