"""Test session set-up: fixtures live in tests/fixtures and are loaded as plugins."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.stripe",
]
