"""Postgres adapter: connections, migrations, ledger partitions, retention, stored positions."""

import psycopg

from meterline.postgres.connect import connect, open_pool
from meterline.postgres.migrate import apply_migrations, pending_migrations

# The driver's errors that mean Postgres cannot answer now (retry later), not a bad statement.
OUTAGES: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)

__all__ = ["OUTAGES", "apply_migrations", "connect", "open_pool", "pending_migrations"]
