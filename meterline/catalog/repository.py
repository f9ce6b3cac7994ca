"""Versioned catalogs per tenant: the interface, an in-memory and a Postgres implementation.

Each apply that changes something stores the whole validated catalog as the next version
(1, 2, ...); an apply that changes nothing stores nothing. Versions are never rewritten or deleted.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from meterline.catalog.diff import CatalogDiff, diff_catalogs
from meterline.catalog.model import Catalog
from meterline.catalog.parse import catalog_from_document
from meterline.errors import NotFound

ConnectionFactory = Callable[[], "psycopg.Connection[Any]"]


class CatalogRepository(abc.ABC):
    """Where each tenant's catalog versions live."""

    @abc.abstractmethod
    def current(self, tenant_id: int) -> tuple[int, Catalog] | None:
        """The latest (version, catalog) of the tenant, or `None` before its first apply."""

    @abc.abstractmethod
    def version(self, tenant_id: int, version: int) -> Catalog | None:
        """The catalog stored as `version`, or `None` if there is no such version."""

    @abc.abstractmethod
    def apply(self, tenant_id: int, catalog: Catalog) -> tuple[int, CatalogDiff]:
        """Store `catalog` as the next version if it differs from the current one.

        Returns the version now current and the diff from the previous one (empty when nothing
        changed, and then nothing is stored). Concurrent applies for one tenant are serialized:
        each diff is against the version committed just before it, and no version is lost.
        Raises `CatalogError` if `catalog` breaks a rule (one built by hand, not parsed).
        """


def _validated(catalog: Catalog) -> Catalog:
    """`catalog` re-read from its document: raises `CatalogError` exactly as storage would."""
    return catalog_from_document(catalog.to_document())


class MemoryCatalogRepository(CatalogRepository):
    """Thread-safe, process-local versions; for tests and tools without a database."""

    def __init__(self) -> None:
        self._versions: dict[int, list[Catalog]] = {}
        self._lock = threading.Lock()

    def current(self, tenant_id: int) -> tuple[int, Catalog] | None:
        with self._lock:
            versions = self._versions.get(tenant_id, [])
            return (len(versions), versions[-1]) if versions else None

    def version(self, tenant_id: int, version: int) -> Catalog | None:
        with self._lock:
            versions = self._versions.get(tenant_id, [])
            return versions[version - 1] if 0 < version <= len(versions) else None

    def apply(self, tenant_id: int, catalog: Catalog) -> tuple[int, CatalogDiff]:
        catalog = _validated(catalog)
        with self._lock:
            versions = self._versions.setdefault(tenant_id, [])
            diff = diff_catalogs(versions[-1] if versions else None, catalog)
            if not diff.is_empty:
                versions.append(catalog)
            return len(versions), diff


_LOCK_TENANT = "SELECT 1 FROM tenants WHERE id = %s FOR NO KEY UPDATE"
_CURRENT = """
    SELECT version, document FROM catalog_versions
    WHERE tenant_id = %s ORDER BY version DESC LIMIT 1
"""
_VERSION = "SELECT document FROM catalog_versions WHERE tenant_id = %s AND version = %s"
_INSERT = "INSERT INTO catalog_versions (tenant_id, version, document) VALUES (%s, %s, %s)"


class PostgresCatalogRepository(CatalogRepository):
    """Versions in the `catalog_versions` table.

    Takes a `psycopg_pool.ConnectionPool` or a factory of new connections (each one is closed
    after use). Applies lock the tenant's row (`FOR NO KEY UPDATE`, which does not block inserts
    that reference the tenant), so concurrent applies for one tenant run one after the other.
    `apply` raises `NotFound` for a tenant id that does not exist.
    """

    def __init__(self, connections: ConnectionPool[Any] | ConnectionFactory) -> None:
        self._connections = connections

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        if isinstance(self._connections, ConnectionPool):
            with self._connections.connection() as conn:
                yield conn
        else:
            with self._connections() as conn:
                yield conn

    def current(self, tenant_id: int) -> tuple[int, Catalog] | None:
        with self._connection() as conn:
            row = conn.execute(_CURRENT, (tenant_id,)).fetchone()
        return None if row is None else (row[0], catalog_from_document(row[1]))

    def version(self, tenant_id: int, version: int) -> Catalog | None:
        with self._connection() as conn:
            row = conn.execute(_VERSION, (tenant_id, version)).fetchone()
        return None if row is None else catalog_from_document(row[0])

    def apply(self, tenant_id: int, catalog: Catalog) -> tuple[int, CatalogDiff]:
        catalog = _validated(catalog)
        with self._connection() as conn, conn.transaction():
            if conn.execute(_LOCK_TENANT, (tenant_id,)).fetchone() is None:
                raise NotFound(f"no tenant with id {tenant_id}")
            row = conn.execute(_CURRENT, (tenant_id,)).fetchone()
            version, old = (0, None) if row is None else (row[0], catalog_from_document(row[1]))
            diff = diff_catalogs(old, catalog)
            if diff.is_empty:
                return version, diff
            conn.execute(_INSERT, (tenant_id, version + 1, Jsonb(catalog.to_document())))
        return version + 1, diff
