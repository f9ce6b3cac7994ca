"""Redis adapter: the only place that builds redis-py clients."""

from meterline.redis.connect import connect, connect_async, hash_tag

__all__ = ["connect", "connect_async", "hash_tag"]
