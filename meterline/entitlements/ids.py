"""Event ids that ingest holds: consume and ingest share one id space per tenant.

The rule that makes "answered = counted" hold for both: an id belongs to whoever used it
first. A consume refuses (409) an `event_id` that ingest holds (the ledger counted it, or
ingest's dedupe store remembers accepting it), and marks the dedupe store with the ids it
grants, so ingest answers a later event with that id as a duplicate (`"duplicates": 1`)
instead of accepting what the ledger would drop.

`IngestedIds` is the interface; `LedgerIngestedIds` asks the ledger and ingest's dedupe store
(`meterline.dedupe`, the same store and key layout as ingest, reached through an event loop
running in a thread because the store's client is asynchronous); `MemoryIngestedIds` is for
unit tests.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from psycopg_pool import ConnectionPool

from meterline.dedupe import Deduper, HeldIds

log = logging.getLogger(__name__)
T = TypeVar("T")

_IN_LEDGER = "SELECT 1 FROM usage_event_ids WHERE tenant_id = %s AND event_id = %s"
_GRANTED = """
SELECT event_id FROM entitlement_answers
WHERE tenant_id = %s AND event_id = ANY(%s) AND status = 200
"""
_GRANTED_WITHIN = """
SELECT event_id FROM entitlement_answers
WHERE tenant_id = %s AND status = 200 AND created_at >= now() - make_interval(secs => %s)
"""


class IngestedIds(abc.ABC):
    @abc.abstractmethod
    def held(self, tenant_id: int, event_id: str) -> bool:
        """Whether ingest already used `event_id` (counted, or accepted within its window).
        Raises the store's error when the ledger cannot answer."""

    @abc.abstractmethod
    def mark(self, tenant_id: int, event_id: str) -> Callable[[], None]:
        """Start making ingest treat `event_id` as taken (call once the grant is stored);
        returns a callable that waits until the mark is written. Neither raises (the dedupe
        store is advisory: a missed mark only lets the ledger decide)."""


class MemoryIngestedIds(IngestedIds):
    def __init__(self) -> None:
        self.ids: set[tuple[int, str]] = set()

    def held(self, tenant_id: int, event_id: str) -> bool:
        return (tenant_id, event_id) in self.ids

    def mark(self, tenant_id: int, event_id: str) -> Callable[[], None]:
        self.ids.add((tenant_id, event_id))
        return lambda: None


class LoopThread:
    """An asyncio event loop in a daemon thread, for calling async clients from threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the loop and wait; raises its error, or TimeoutError."""
        return self.submit(coro).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Start `coro` on the loop; never blocks."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class LedgerIngestedIds(IngestedIds):
    """The ledger's identities (`usage_event_ids`) and ingest's dedupe store; `deduper` runs
    on `loop`.

    A dedupe store that fails or times out (`timeout_s`) counts as "not seen", as in ingest."""

    def __init__(
        self, pool: ConnectionPool[Any], deduper: Deduper, loop: LoopThread, timeout_s: float
    ) -> None:
        self._pool = pool
        self._deduper = deduper
        self._loop = loop
        self._timeout = timeout_s

    def held(self, tenant_id: int, event_id: str) -> bool:
        seen = self._loop.submit(self._deduper.seen(tenant_id, [event_id]))
        with self._pool.connection() as conn:
            if conn.execute(_IN_LEDGER, (tenant_id, event_id)).fetchone() is not None:
                return True
        try:
            return bool(seen.result(self._timeout)[0])
        except Exception:
            log.warning("dedupe store did not answer; the ledger decided", exc_info=True)
            return False

    def mark(self, tenant_id: int, event_id: str) -> Callable[[], None]:
        """Sent at once and waited for later, so the mark overlaps the publish."""
        done = self._loop.submit(self._deduper.mark(tenant_id, [event_id]))

        def wait() -> None:
            try:
                done.result(self._timeout)
            except Exception:
                log.warning("dedupe store did not take a consume's id", exc_info=True)

        return wait


class GrantedIds(HeldIds):
    """The ids consume granted (`entitlement_answers`): ingest's durable record of the ids it
    must answer as duplicates when its dedupe store may have lost their marks."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self._pool = pool

    def held(self, tenant_id: int, ids: Sequence[str]) -> set[str]:
        with self._pool.connection() as conn:
            return {str(r[0]) for r in conn.execute(_GRANTED, (tenant_id, list(ids)))}

    def within(self, tenant_id: int, seconds: float) -> list[str]:
        with self._pool.connection() as conn:
            return [str(r[0]) for r in conn.execute(_GRANTED_WITHIN, (tenant_id, seconds))]
