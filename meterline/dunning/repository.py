"""Where dunning sequences live: the interface, and an in-memory twin for unit tests.

`change(tenant, invoice, fn)` is the one way a sequence moves: `fn` gets the stored sequence
(or None) and returns the new one with the notifications it announces; the repository stores
both atomically, with no other change of the same invoice in between (Postgres: one
transaction under an advisory lock on the invoice, the notifications written to the outbox in
it). So a webhook delivered twice, or racing the job, takes each step once: the second caller
sees the first's steps. A failure in `fn` or in the write stores nothing and announces nothing.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from datetime import datetime

from meterline.dunning.model import DunningPolicy, Sequence
from meterline.notify.events import Notification

Change = Callable[[Sequence | None], tuple[Sequence | None, list[Notification]]]


class DunningRepository(abc.ABC):
    @abc.abstractmethod
    def change(self, tenant_id: int, invoice_id: str, fn: Change) -> Sequence | None:
        """Apply `fn` atomically (module docstring); returns the stored sequence."""

    @abc.abstractmethod
    def get(self, tenant_id: int, invoice_id: str) -> Sequence | None: ...

    @abc.abstractmethod
    def due(self, now: datetime, limit: int = 100) -> list[tuple[int, str]]:
        """(tenant, invoice) of sequences whose next timed step is due at `now`, oldest first."""

    @abc.abstractmethod
    def open_for(self, subscription_id: str) -> list[tuple[int, str]]:
        """(tenant, invoice) of the subscription's sequences not ended."""

    @abc.abstractmethod
    def has_open(self, invoice_id: str) -> bool:
        """Whether the invoice has a sequence not ended (any tenant: Stripe ids are unique)."""

    @abc.abstractmethod
    def current(self, tenant_id: int, customer: str) -> Sequence | None:
        """The customer's newest sequence not ended; None when there is none."""


class MemoryDunningRepository(DunningRepository):
    """The same contract in a dict; `published` holds each notification once (by id)."""

    def __init__(self, policy: DunningPolicy) -> None:
        self._policy = policy
        self._lock = threading.Lock()
        self._rows: dict[tuple[int, str], Sequence] = {}
        self.published: dict[str, Notification] = {}

    def change(self, tenant_id: int, invoice_id: str, fn: Change) -> Sequence | None:
        key = (tenant_id, invoice_id)
        with self._lock:
            seq, notifications = fn(self._rows.get(key))
            if seq is not None:
                self._rows[key] = seq
            for n in notifications:
                self.published.setdefault(n.msg_id, n)
            return seq

    def get(self, tenant_id: int, invoice_id: str) -> Sequence | None:
        return self._rows.get((tenant_id, invoice_id))

    def due(self, now: datetime, limit: int = 100) -> list[tuple[int, str]]:
        timed = [
            (nxt[1], key) for key, s in self._rows.items() if (nxt := s.next_step(self._policy))
        ]
        return [key for at, key in sorted(timed) if at <= now][:limit]

    def open_for(self, subscription_id: str) -> list[tuple[int, str]]:
        return [
            key
            for key, s in self._rows.items()
            if s.subscription_id == subscription_id and s.ended is None
        ]

    def has_open(self, invoice_id: str) -> bool:
        return any(i == invoice_id and s.ended is None for (_t, i), s in self._rows.items())

    def current(self, tenant_id: int, customer: str) -> Sequence | None:
        mine = [
            s
            for (t, _), s in self._rows.items()
            if t == tenant_id and s.customer == customer and s.ended is None
        ]
        return max(mine, key=lambda s: s.started_at, default=None)
