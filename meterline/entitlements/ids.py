"""Event ids that ingest holds: consume and ingest share one id space per tenant.

The rule that makes "answered = counted" hold for both: an id belongs to whoever used it
first. A consume refuses (409) an `event_id` that ingest holds (the ledger counted it, or
ingest's dedupe store remembers accepting it), and marks the dedupe store with the ids it
grants, so ingest answers a later event with that id as a duplicate (`"duplicates": 1`)
instead of accepting what the ledger would drop.

`IngestedIds` is the interface; `LedgerIngestedIds` (in postgres.py) asks the ledger and
ingest's dedupe store (`meterline.dedupe`, the same store, script and key layout as ingest,
through `BlockingRedisDeduper`: consumes run in threads, so a blocking client saves each call a
hop to an event loop and back); `MemoryIngestedIds` is for unit tests. `guard()` is the store as
the guard of the view's reservations (`meterline.view.IdGuard`): the Ledger's runs the dedupe
store's check inside each reservation's script, so a consume's check costs no round trip.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import TypeVar

from meterline.view import IdGuard

T = TypeVar("T")


class IngestedIds(abc.ABC):
    @abc.abstractmethod
    def held(self, tenant_id: int, event_id: str, in_ledger: bool | None = None) -> bool:
        """Whether ingest already used `event_id` (counted, or accepted within its window).
        `in_ledger`: what the ledger answered already, read after the id was claimed (the
        claim's statement reads it: `Claim.in_ledger`); None: read it here. Raises the store's
        error when the ledger cannot answer."""

    @abc.abstractmethod
    def mark(self, tenant_id: int, event_id: str) -> Callable[[], None]:
        """Start making ingest treat `event_id` as taken (call once the grant is stored);
        returns a callable that waits until the mark is written. Neither raises (the dedupe
        store is advisory: a missed mark only lets the ledger decide)."""

    def held_many(self, asks: Sequence[tuple[int, str, bool | None]]) -> list[bool]:
        """`held` of each (tenant, event_id, in_ledger), in order. A store that can asks
        once per tenant (ingest's dedupe store: one script call for all the ids)."""
        return [self.held(t, event_id, in_ledger) for t, event_id, in_ledger in asks]

    def mark_many(self, ids: Sequence[tuple[int, str]]) -> None:
        """`mark` of each (tenant, event_id), written when it returns. Never raises."""
        for wait in [self.mark(t, event_id) for t, event_id in ids]:
            wait()

    def guard(self) -> IdGuard:
        """This store as the guard of the view's reservations (`UsageView.reserve_many`), for
        ids the ledger does not hold: `held` with `in_ledger` False."""
        return StoreGuard(self)


class StoreGuard(IdGuard):
    """An `IngestedIds` asked as an `IdGuard` (`held_many`, one call)."""

    def __init__(self, ids: IngestedIds) -> None:
        self._ids = ids

    def held_many(self, ids: Sequence[tuple[int, str]]) -> list[bool]:
        return self._ids.held_many([(t, event_id, False) for t, event_id in ids])


class MemoryIngestedIds(IngestedIds):
    def __init__(self) -> None:
        self.ids: set[tuple[int, str]] = set()

    def held(self, tenant_id: int, event_id: str, in_ledger: bool | None = None) -> bool:
        return bool(in_ledger) or (tenant_id, event_id) in self.ids

    def mark(self, tenant_id: int, event_id: str) -> Callable[[], None]:
        self.ids.add((tenant_id, event_id))
        return lambda: None
