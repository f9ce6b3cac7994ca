"""Connections with errors a person can act on instead of driver tracebacks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from meterline.errors import ConfigError
from meterline.urls import redact

Pool = ConnectionPool[Any]
Connection = psycopg.Connection[Any]


def connect(url: str, *, autocommit: bool = False, timeout: float = 5.0) -> Connection:
    """Open one connection; a bad URL or an unreachable server raises one clear ConfigError."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, int(timeout)))
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"METERLINE_DATABASE_URL is not a valid Postgres URL: {exc}") from None
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot connect to Postgres at {redact(url)}: {first}") from None


def open_pool(url: str, *, min_size: int = 1, max_size: int = 8, name: str = "meterline") -> Pool:
    """A connection pool that has proven it can connect (fails fast with a ConfigError)."""
    connect(url).close()
    pool = ConnectionPool(url, min_size=min_size, max_size=max_size, name=name, open=False)
    pool.open(wait=True, timeout=10)
    return pool


@contextmanager
def autocommitted(pool: Pool) -> Iterator[Connection]:
    """A pooled connection in autocommit for the block: each statement is its own transaction,
    one round trip (a connection outside autocommit sends BEGIN before the first statement and
    COMMIT on return: three round trips for one statement). For blocks whose statements need no
    common transaction; `conn.transaction()` still opens one inside."""
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            try:
                conn.autocommit = False
            except psycopg.Error:
                conn.close()  # broken: the pool discards it rather than lend it in autocommit


def check_url(url: str) -> None:
    """A ConfigError when `url` is not a valid Postgres URL (no connection is tried)."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"METERLINE_DATABASE_URL is not a valid Postgres URL: {exc}") from None


def background_pool(url: str, *, max_size: int, name: str, timeout: float = 5.0) -> Pool:
    """A pool that connects in the background: opening it never fails, and a connection that
    cannot be had within `timeout` raises PoolTimeout (an OperationalError, one of `OUTAGES`),
    for a caller that waits for Postgres like any outage instead of failing at start."""
    pool = ConnectionPool(url, min_size=1, max_size=max_size, name=name, open=False,
                          timeout=timeout)  # fmt: skip
    pool.open(wait=False)
    return pool


def connect_or_outage(url: str, *, timeout: int = 5) -> Connection:
    """One connection; unlike `connect`, an unreachable server raises the driver's
    OperationalError (one of `OUTAGES`): an outage to retry, not a ConfigError."""
    return psycopg.connect(url, connect_timeout=timeout)


def ping(pool: Pool, timeout: float | None = 2.0) -> bool:
    """Postgres answers a query through `pool`, a connection had within `timeout` (`None`: the
    pool's own); raises when it cannot."""
    with pool.connection(timeout=timeout) as conn:
        row = conn.execute("SELECT 1").fetchone()
    return row is not None and row[0] == 1
