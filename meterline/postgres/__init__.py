"""Postgres adapter: connections, migrations, ledger partitions, retention, stored positions."""

import psycopg

from meterline.postgres.connect import (
    Connection,
    Pool,
    autocommitted,
    background_pool,
    check_url,
    connect,
    connect_or_outage,
    open_pool,
    ping,
)
from meterline.postgres.migrate import apply_migrations, pending_migrations

# The driver's errors that mean Postgres cannot answer now (retry later), not a bad statement.
OUTAGES: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)

# `Pool` and `Connection` (connect.py) are the names code outside the repositories annotates
# the pool and connections it hands to them with, instead of the driver's types.

__all__ = [
    "OUTAGES",
    "Connection",
    "Pool",
    "apply_migrations",
    "autocommitted",
    "background_pool",
    "check_url",
    "connect",
    "connect_or_outage",
    "open_pool",
    "pending_migrations",
    "ping",
]
