"""The dedupe fast path: which event ids a tenant already sent within the dedupe window."""

from meterline.dedupe.base import Deduper
from meterline.dedupe.bounded import BoundedDeduper
from meterline.dedupe.coalesce import CoalescingDeduper
from meterline.dedupe.durable import DurableIdsDeduper, HeldIds, MemoryHeldIds
from meterline.dedupe.memory import MemoryDeduper
from meterline.dedupe.redis_store import BlockingRedisDeduper, RedisDeduper

__all__ = [
    "BlockingRedisDeduper",
    "BoundedDeduper",
    "CoalescingDeduper",
    "Deduper",
    "DurableIdsDeduper",
    "HeldIds",
    "MemoryDeduper",
    "MemoryHeldIds",
    "RedisDeduper",
]
