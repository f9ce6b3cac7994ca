"""A small, versioned migration runner.

Migrations are the `NNNN_name.sql` files in `meterline/postgres/migrations`, applied in order,
each in its own transaction, recorded in `schema_migrations`. A Postgres advisory lock makes
concurrent runs safe; running again applies nothing. Applied files must never be edited: the
runner stores each file's SHA-256 and refuses to run when an applied file has changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import psycopg

from meterline.errors import ConfigError

_LOCK_ID = 0x6D657465  # "mete"
_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    folder = resources.files("meterline.postgres") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(int(version), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def pending_migrations(conn: psycopg.Connection) -> list[Migration]:
    conn.execute(_BOOKKEEPING)
    rows = conn.execute("SELECT version, sha256 FROM schema_migrations").fetchall()
    applied: dict[int, str] = {int(v): str(h) for v, h in rows}
    pending = []
    for m in available_migrations():
        if m.version not in applied:
            pending.append(m)
        elif applied[m.version] != m.sha256:
            raise ConfigError(f"migration {m.version:04d}_{m.name} changed after it was applied")
    return pending


def apply_migrations(conn: psycopg.Connection) -> list[Migration]:
    """Apply what is pending and return it (empty when the schema is current)."""
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
    try:
        pending = pending_migrations(conn)
        for m in pending:
            with conn.transaction():
                conn.execute(m.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.sha256),
                )
        return pending
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
