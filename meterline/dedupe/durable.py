"""A deduper wrapper that asks a durable record about the ids a store may have lost.

The dedupe store is derived state: Redis may be flushed or restarted empty. For most ids a
forgotten mark is harmless (the ledger drops the copy), but an id a consume holds is not a
copy of anything ingest has: accepted, its event would be dropped by the ledger in favour of
the consume's, and its value lost. So while the store may have lost marks (its answer `None`,
see `RedisDeduper`), this wrapper asks `HeldIds`, the durable record of such ids (consume's
granted answers in Postgres), about the ids the store does not hold, one query per request.
It also restores the store in the background, once per tenant and loss: it marks again every
id the record took within the window, then declares the store intact, after which checks are
one store round trip again. Nothing changes while the store is intact (the usual case).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from meterline.dedupe.base import Deduper

log = logging.getLogger(__name__)
RESTORE_CHUNK = 5_000
MARGIN_S = 60.0
"""An id's record is written a moment before the store is marked: restore a little more."""


class HeldIds(abc.ABC):
    """The durable record of ids that are taken although ingest's store may not hold them."""

    @abc.abstractmethod
    def held(self, tenant_id: int, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the record holds. Blocks; raises the record's error."""

    @abc.abstractmethod
    def within(self, tenant_id: int, seconds: float) -> list[str]:
        """Every id the record took in the last `seconds`. Blocks; raises the record's error."""


class MemoryHeldIds(HeldIds):
    def __init__(self) -> None:
        self.ids: dict[int, set[str]] = {}

    def held(self, tenant_id: int, ids: Sequence[str]) -> set[str]:
        return self.ids.get(tenant_id, set()) & set(ids)

    def within(self, tenant_id: int, seconds: float) -> list[str]:
        return sorted(self.ids.get(tenant_id, set()))


class Restorable(Protocol):
    """A store that knows when it may have lost marks (`RedisDeduper`)."""

    async def intact_since(self, tenant_id: int) -> str | None: ...

    async def declare_intact(self, tenant_id: int, since: str) -> bool: ...


class DurableIdsDeduper(Deduper):
    """`inner`'s answers, with each `None` replaced by the record's answer; `store` is the
    store at the bottom of `inner` (to restore it). A record that fails raises to the caller
    (for ingest: every id counts as unseen, as with any dedupe failure)."""

    def __init__(self, inner: Deduper, store: Restorable, record: HeldIds) -> None:
        self.window_s = inner.window_s
        self._inner, self._store, self._record = inner, store, record
        self._restoring: dict[int, asyncio.Task[None]] = {}

    async def seen(self, tenant_id: int, ids: Sequence[str]) -> list[bool | None]:
        flags = await self._inner.seen(tenant_id, ids)
        if None not in flags:  # an intact store: the usual case, one scan in C
            return flags
        unknown = [i for i, flag in zip(ids, flags, strict=True) if flag is None]
        self._restore_soon(tenant_id)
        held = await asyncio.to_thread(self._record.held, tenant_id, unknown)
        return [i in held if f is None else f for i, f in zip(ids, flags, strict=True)]

    async def mark(self, tenant_id: int, ids: Sequence[str]) -> None:
        await self._inner.mark(tenant_id, ids)

    def _restore_soon(self, tenant_id: int) -> None:
        if tenant_id in self._restoring:
            return
        task = asyncio.get_running_loop().create_task(self._restore(tenant_id))
        self._restoring[tenant_id] = task
        task.add_done_callback(lambda _t: self._restoring.pop(tenant_id, None))

    async def _restore(self, tenant_id: int) -> None:
        """Mark again what the record took within the window, then declare the store intact
        (refused if it was emptied again meanwhile: the next check starts another restore)."""
        try:
            since = await self._store.intact_since(tenant_id)
            if since is None:
                return
            seconds = self.window_s + MARGIN_S
            ids = await asyncio.to_thread(self._record.within, tenant_id, seconds)
            for start in range(0, len(ids), RESTORE_CHUNK):
                await self._inner.mark(tenant_id, ids[start : start + RESTORE_CHUNK])
            restored = await self._store.declare_intact(tenant_id, since)
            log.info("dedupe store restored", extra={"tenant": tenant_id, "ids": len(ids)})
            if not restored:
                log.warning("dedupe store emptied again during its restore", extra={})
        except Exception:
            log.warning("dedupe store restore failed; the record keeps answering", exc_info=True)

    async def ping(self) -> bool:
        return await self._inner.ping()

    async def close(self) -> None:
        for task in list(self._restoring.values()):
            task.cancel()
        await self._inner.close()
