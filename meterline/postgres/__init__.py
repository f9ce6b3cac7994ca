"""Postgres adapter: connections, migrations, ledger partitions, retention, stored positions."""

from meterline.postgres.connect import connect, open_pool
from meterline.postgres.migrate import apply_migrations, pending_migrations

__all__ = ["apply_migrations", "connect", "open_pool", "pending_migrations"]
