"""A deduper wrapper that bounds how long each store call may take.

Put it below `CoalescingDeduper` (`CoalescingDeduper(BoundedDeduper(RedisDeduper(...)))`): the
timer then runs once per merged store call instead of once per request, which is most of what a
per-request timeout costs on the hot path. A caller waits for at most the call in flight plus
its own merged call, so at most twice `timeout_s`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from meterline.dedupe.base import Deduper


class BoundedDeduper(Deduper):
    """Same contract as `inner`; a call slower than `timeout_s` raises TimeoutError (callers
    treat it like any store failure: every id unseen, a missed mark)."""

    def __init__(self, inner: Deduper, timeout_s: float) -> None:
        self.window_s = inner.window_s
        self._inner, self._timeout = inner, timeout_s

    async def seen(self, tenant_id: int, ids: Sequence[str]) -> list[bool | None]:
        async with asyncio.timeout(self._timeout):
            return await self._inner.seen(tenant_id, ids)

    async def mark(self, tenant_id: int, ids: Sequence[str]) -> None:
        async with asyncio.timeout(self._timeout):
            await self._inner.mark(tenant_id, ids)

    async def exchange(
        self, tenant_id: int, mark_ids: Sequence[str], seen_ids: Sequence[str]
    ) -> list[bool | None]:
        async with asyncio.timeout(self._timeout):
            return await self._inner.exchange(tenant_id, mark_ids, seen_ids)

    async def ping(self) -> bool:
        return await self._inner.ping()

    async def close(self) -> None:
        await self._inner.close()
