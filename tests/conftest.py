"""Test session set-up: fixtures live in tests/fixtures and are loaded as plugins.

Tests marked `reliability` are full-size measurements: pyproject.toml's `addopts` leaves them
out (`-m 'not reliability'`); `make reliability` runs them (`-m reliability`)."""

from __future__ import annotations

import os
from pathlib import Path

# The processes the tests start import this checkout, the dev stack's distribution included.
ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), str(ROOT / "devstack"), *filter(None, [os.environ.get("PYTHONPATH")])]
)

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.stripe",
]
