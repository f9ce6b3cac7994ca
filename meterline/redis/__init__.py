"""Redis adapter: the only place that builds redis-py clients."""

import redis

from meterline.redis.connect import connect, connect_async, hash_tag

# The client's errors that mean Redis cannot answer now (retry later).
OUTAGES: tuple[type[Exception], ...] = (redis.RedisError,)

__all__ = ["OUTAGES", "connect", "connect_async", "hash_tag"]
