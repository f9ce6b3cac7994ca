"""The start-up check every service makes: the database schema is not older than the code.

A service started on a schema its migrations have not reached yet would fail later, on a live
request or a batch, with a driver error about a missing column or table (or, worse, write rows
the new schema would have refused). So each service compares, once at start, the migrations
recorded in `schema_migrations` with those it ships, and refuses to start while any is missing,
naming them and the command that applies them.

A schema *newer* than the code is accepted: migrations stay compatible with the previous
release (deploy/README.md, "Upgrade and rollback"), so during a rollout, or after a rollback,
older pods keep running on the migrated schema.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from meterline.errors import ConfigError
from meterline.postgres.migrate import Migration, available_migrations


class SchemaBehind(ConfigError):
    """The database lacks migrations this code needs; `missing` lists them in order."""

    def __init__(self, message: str, missing: list[Migration]) -> None:
        super().__init__(message)
        self.missing = missing


def applied_versions(conn: psycopg.Connection[Any]) -> set[int] | None:
    """The versions recorded in `schema_migrations`, or None when the table does not exist.
    Reads only: unlike the migration runner, it creates nothing."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    return {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}


def missing_migrations(applied: set[int] | None) -> list[Migration]:
    """The migrations this code ships that `applied` lacks (all of them when it is None)."""
    return [m for m in available_migrations() if applied is None or m.version not in applied]


def require_current_schema(conn: psycopg.Connection[Any], service: str) -> None:
    """Raise SchemaBehind (a ConfigError, so start-up stops with its message) when the database
    lacks a migration this code ships."""
    missing = missing_migrations(applied_versions(conn))
    if missing:
        raise SchemaBehind(_message(service, conn, missing), missing)


def require_current_schema_in(pool: ConnectionPool, service: str) -> None:
    """`require_current_schema` on a connection of `pool`."""
    with pool.connection() as conn:
        require_current_schema(conn, service)


def _message(service: str, conn: psycopg.Connection[Any], missing: list[Migration]) -> str:
    newest = available_migrations()[-1]
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
    database = conn.info.dbname
    return (
        f"{service} refuses to start: the schema of database {database!r} is older than this "
        f"code, which needs migration {newest.version:04d}_{newest.name}; missing: {names}. "
        "Run `meterline migrate` (or the migration Job) first."
    )
