"""Postgres adapter: connections, migrations, ledger partitions, retention, stored positions."""

from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from meterline.postgres.connect import autocommitted, connect, open_pool
from meterline.postgres.migrate import apply_migrations, pending_migrations

# The driver's errors that mean Postgres cannot answer now (retry later), not a bad statement.
OUTAGES: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)

# A pool of connections, and one connection, for code outside the repositories that hands
# them to the repositories (the names code outside them annotates with, instead of the driver's).
Pool = ConnectionPool[Any]
Connection = psycopg.Connection[Any]

__all__ = [
    "OUTAGES",
    "Connection",
    "Pool",
    "apply_migrations",
    "autocommitted",
    "connect",
    "open_pool",
    "pending_migrations",
]
