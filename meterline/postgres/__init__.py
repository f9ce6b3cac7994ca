"""Postgres adapter: connections, the migration runner and ledger partitions (psycopg 3)."""

from meterline.postgres.connect import connect, open_pool
from meterline.postgres.migrate import apply_migrations, pending_migrations

__all__ = ["apply_migrations", "connect", "open_pool", "pending_migrations"]
