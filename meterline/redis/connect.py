"""Redis clients with clear connection errors, and the key hash tags used for Redis Cluster."""

from __future__ import annotations

import redis
import redis.asyncio

from meterline.errors import ConfigError
from meterline.urls import redact


def connect(url: str, *, check: bool = True, timeout: float = 10.0) -> redis.Redis:
    """A client for `url` whose calls give up after `timeout` seconds; with `check`, proves the
    server answers or raises ConfigError."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=timeout)
    if check:
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ConfigError(f"cannot reach Redis at {redact(url)}: {exc}") from None
    return client


def connect_async(url: str, max_connections: int = 32) -> redis.asyncio.Redis:
    """An asyncio client for `url` (for async services); it connects on first use.

    Its pool holds up to `max_connections`; callers beyond that wait (up to 5 s) for one.
    """
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=5, socket_connect_timeout=5, socket_timeout=10
    )
    return redis.asyncio.Redis(connection_pool=pool)


def hash_tag(tenant_id: int, customer: str) -> str:
    """`{tenant/customer}`: all of one customer's keys land in one Redis Cluster slot."""
    return "{" + f"{tenant_id}/{customer}" + "}"
