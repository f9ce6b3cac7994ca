"""The dedupe interface.

The fast path is advisory: it lets ingest answer `duplicates` without producing an id again,
but Postgres (the aggregator's unique ledger) is the final word. So the contract is one-sided:
a false "not seen" is harmless (the ledger drops the copy), a false "seen" would lose an event.
Callers therefore `mark` ids only after the broker acknowledged them, and treat a failing
store as "nothing seen".
"""

from __future__ import annotations

import abc
from collections.abc import Sequence


class Deduper(abc.ABC):
    """Ids per tenant, remembered for `window_s` seconds after `mark`."""

    window_s: float

    @abc.abstractmethod
    async def seen(self, tenant_id: int, ids: Sequence[str]) -> list[bool | None]:
        """For each id, whether it was marked within the window: one round trip per call.
        `None` means "not held, but the store may have lost it" (Redis was emptied within the
        window): callers treat it as not seen, or ask a durable record (`DurableIdsDeduper`).

        Raises the store's error when it cannot answer; callers then treat every id as unseen.
        """

    @abc.abstractmethod
    async def mark(self, tenant_id: int, ids: Sequence[str]) -> None:
        """Remember `ids` for the window. Call only once the events are durably accepted."""

    async def exchange(
        self, tenant_id: int, mark_ids: Sequence[str], seen_ids: Sequence[str]
    ) -> list[bool | None]:
        """`mark(mark_ids)` then `seen(seen_ids)`, in one round trip where the store can.

        Raises like either; when it raises, the marks may or may not have been written (a
        missed mark only lets a copy through to the ledger).
        """
        if mark_ids:
            await self.mark(tenant_id, mark_ids)
        return await self.seen(tenant_id, seen_ids) if seen_ids else []

    async def ping(self) -> bool:
        """Whether the store answers (for readiness checks)."""
        return True

    async def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release connections; the deduper is unusable afterwards."""
