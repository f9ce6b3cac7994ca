"""Redis adapter: the only place that builds redis-py clients."""

from meterline.redis.connect import connect, hash_tag

__all__ = ["connect", "hash_tag"]
