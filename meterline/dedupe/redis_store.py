"""Dedupe keys in Redis: one Lua (EVALSHA) round trip per batch to check, one to mark.

Keys read `<prefix>:dd:{<tenant>}:<id>` with a per-key expiry of the window. The hash tag is
the tenant, so one batch's keys share a Redis Cluster slot and a script may touch them all.
Works on Redis 6.2 (scripts, not functions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio

from meterline.dedupe.base import Deduper

_SEEN = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('EXISTS', key) end
return out
"""

_MARK = """
for _, key in ipairs(KEYS) do redis.call('SET', key, '1', 'PX', ARGV[1]) end
return #KEYS
"""


class RedisDeduper(Deduper):
    """`client` comes from `meterline.redis.connect_async`."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str = "ml", window_s: float = 3600.0):
        self.window_s = window_s
        self._client = client
        self._prefix = prefix
        self._seen: Any = client.register_script(_SEEN)
        self._mark: Any = client.register_script(_MARK)
        self._window_ms = str(int(window_s * 1000))

    def _keys(self, tenant_id: int, ids: Sequence[str]) -> list[str]:
        head = f"{self._prefix}:dd:{{{tenant_id}}}:"
        return [head + i for i in ids]

    async def seen(self, tenant_id: int, ids: Sequence[str]) -> list[bool]:
        if not ids:
            return []
        found = await self._seen(keys=self._keys(tenant_id, ids))
        return [bool(x) for x in found]

    async def mark(self, tenant_id: int, ids: Sequence[str]) -> None:
        if ids:
            await self._mark(keys=self._keys(tenant_id, ids), args=[self._window_ms])

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except redis.RedisError:
            return False

    async def close(self) -> None:
        await self._client.aclose()
