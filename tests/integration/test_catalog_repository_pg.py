"""The `CatalogRepository` contract against real Postgres, plus what only Postgres has."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from meterline.catalog import CatalogRepository, PostgresCatalogRepository
from meterline.errors import NotFound
from tests.unit.test_catalog_repository import CatalogRepositoryContract, example

pytestmark = pytest.mark.integration


@pytest.fixture
def pool(pg_conninfo: str) -> Iterator[ConnectionPool[Any]]:
    with ConnectionPool(pg_conninfo, min_size=1, max_size=8, open=True) as opened:
        yield opened


def _create_tenant(conninfo: str, name: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "INSERT INTO tenants (name) VALUES (%s) RETURNING id", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def tenants(pg_conninfo: str) -> tuple[int, int]:
    return _create_tenant(pg_conninfo, "acme"), _create_tenant(pg_conninfo, "globex")


class TestPostgresCatalogRepository(CatalogRepositoryContract):
    @pytest.fixture
    def repository(self, pool: ConnectionPool[Any]) -> CatalogRepository:
        return PostgresCatalogRepository(pool)


def test_a_connection_factory_works_too(pg_conninfo: str, tenants: tuple[int, int]) -> None:
    repository = PostgresCatalogRepository(lambda: psycopg.connect(pg_conninfo))
    assert repository.apply(tenants[0], example())[0] == 1
    assert repository.current(tenants[0]) == (1, example())


def test_stores_the_document_as_jsonb(pg_conninfo: str, tenants: tuple[int, int]) -> None:
    PostgresCatalogRepository(lambda: psycopg.connect(pg_conninfo)).apply(tenants[0], example())
    with psycopg.connect(pg_conninfo) as conn:
        row = conn.execute(
            "SELECT version, document, applied_at FROM catalog_versions WHERE tenant_id = %s",
            (tenants[0],),
        ).fetchone()
    assert row is not None
    assert row[0] == 1 and row[1] == example().to_document() and row[2] is not None


def test_an_unknown_tenant_is_not_found(pool: ConnectionPool[Any]) -> None:
    with pytest.raises(NotFound):
        PostgresCatalogRepository(pool).apply(999_999, example())
