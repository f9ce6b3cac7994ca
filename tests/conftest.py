"""Test session set-up: fixtures live in tests/fixtures and are loaded as plugins."""

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
