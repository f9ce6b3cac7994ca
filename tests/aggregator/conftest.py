"""Fixtures shared by the aggregator's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg_pool import ConnectionPool

from meterline.postgres import open_pool


@pytest.fixture
def pool(pg_conninfo: str) -> Iterator[ConnectionPool]:
    """A small pool on the test's own database."""
    p = open_pool(pg_conninfo, max_size=3)
    yield p
    p.close()
