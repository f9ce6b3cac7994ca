"""Reading what the system counted for one tenant: Postgres ledger rows and rollups, the Redis view.

Reads never raise for an outage: while Postgres or Redis is down (a scenario stopped it) the
polling reads answer None and the caller waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
import redis

from bench.reliability.ledger import Key, Total
from meterline.catalog.model import Aggregation
from meterline.redis import connect as redis_connect
from meterline.view import RedisUsageView

HOUR_MS = 3_600_000


class Observer:
    """Reads for one stack; `redis_prefix` is the view's key prefix (RedisSettings.key_prefix)."""

    def __init__(self, postgres_url: str, redis_url: str, redis_prefix: str = "ml") -> None:
        self.postgres_url, self.redis_url, self.redis_prefix = postgres_url, redis_url, redis_prefix

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]] | None:
        try:
            with psycopg.connect(self.postgres_url, autocommit=True, connect_timeout=2) as conn:
                return conn.execute(sql, params).fetchall()
        except psycopg.Error:
            return None

    def counted(self, tenant_id: int) -> int | None:
        """Events counted in the rollups of the tenant (None while Postgres does not answer)."""
        rows = self._query(
            "SELECT coalesce(sum(count), 0) FROM usage_rollups_minute WHERE tenant_id = %s",
            (tenant_id,),
        )
        return None if rows is None else int(rows[0][0])

    def ledger_ids(self, tenant_id: int) -> list[str]:
        """Every event id in the Postgres event ledger for the tenant (one per row)."""
        rows = self._query("SELECT event_id FROM usage_events WHERE tenant_id = %s", (tenant_id,))
        if rows is None:
            raise RuntimeError("Postgres did not answer the ledger read")
        return [r[0] for r in rows]

    def ids_like(self, pattern: str) -> int:
        """Ledger rows of any tenant whose id matches the SQL LIKE `pattern`."""
        rows = self._query("SELECT count(*) FROM usage_events WHERE event_id LIKE %s", (pattern,))
        if rows is None:
            raise RuntimeError("Postgres did not answer")
        return int(rows[0][0])

    def rollups(self, tenant_id: int) -> dict[Key, Total]:
        rows = self._query(
            "SELECT customer, meter, sum(value), sum(count) FROM usage_rollups_minute "
            "WHERE tenant_id = %s GROUP BY customer, meter",
            (tenant_id,),
        )
        if rows is None:
            raise RuntimeError("Postgres did not answer the rollup read")
        return {(r[0], r[1]): Total(float(r[2]), int(r[3])) for r in rows}

    def redis_view(
        self, tenant_id: int, keys: Iterable[Key], start_ms: int, end_ms: int
    ) -> dict[Key, float] | None:
        """Usage per key from the Redis view (sum meters); None while Redis is down."""
        try:
            client = redis_connect(self.redis_url, check=False)
            view = RedisUsageView(client, self.redis_prefix)
            found = {
                k: view.usage(tenant_id, k[0], k[1], Aggregation.SUM, start_ms, end_ms)
                for k in keys
            }
            client.close()
        except redis.RedisError:
            return None
        return {k: float(v) for k, v in found.items() if v}


def view_window(first_ms: int, last_ms: int) -> tuple[int, int]:
    """An hour-aligned window covering every event time in [first, last]."""
    return first_ms - first_ms % HOUR_MS - HOUR_MS, last_ms - last_ms % HOUR_MS + 2 * HOUR_MS


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> float | None:
    """Seconds until `check()` held, or None if it did not within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(interval)
    return None
