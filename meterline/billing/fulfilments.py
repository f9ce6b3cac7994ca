"""Checkout fulfilment, once per session: the record of each fulfilled session and its grants.

`FulfilmentRepository.fulfil(...)` writes the session's record and the grants it gives in one
transaction, and does nothing when the session already has a record, so a webhook delivered
twice, late, or racing another delivery of the same session gives the credits once.
The Postgres version (meterline/billing/postgres.py: `checkout_fulfilments`, migration 0019) and
the in-memory one pass the same contract tests.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass

from meterline.entitlements import GrantRepository, NewGrant


@dataclass(frozen=True, slots=True)
class Fulfilment:
    """A fulfilled session: `kind` plan | credit_pack, `item` the plan or pack key."""

    session_id: str
    tenant_id: int
    customer: str
    kind: str
    item: str
    grant_ids: tuple[int, ...] = ()


class FulfilmentRepository(abc.ABC):
    @abc.abstractmethod
    def fulfil(self, record: Fulfilment, grants: list[NewGrant]) -> bool:
        """Store `record` and add `grants` atomically; False (and nothing written) when the
        session was already fulfilled."""

    @abc.abstractmethod
    def get(self, session_id: str) -> Fulfilment | None: ...


class MemoryFulfilmentRepository(FulfilmentRepository):
    def __init__(self, grants: GrantRepository) -> None:
        self._grants = grants
        self._rows: dict[str, Fulfilment] = {}
        self._lock = threading.Lock()

    def fulfil(self, record: Fulfilment, grants: list[NewGrant]) -> bool:
        with self._lock:
            if record.session_id in self._rows:
                return False
            ids = tuple(self._grants.add(record.tenant_id, g).id for g in grants)
            self._rows[record.session_id] = with_grants(record, ids)
            return True

    def get(self, session_id: str) -> Fulfilment | None:
        return self._rows.get(session_id)


def with_grants(record: Fulfilment, ids: tuple[int, ...]) -> Fulfilment:
    return Fulfilment(
        record.session_id, record.tenant_id, record.customer, record.kind, record.item, ids
    )
