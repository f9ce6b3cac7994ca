"""Where revenue events are kept: one `SubscriptionState` per Stripe event id, and one
`MeteredInvoice` per closed invoice, per tenant.

`RevenueEventStore` is the contract; `MemoryRevenueEventStore` beside it and
`PostgresRevenueEventStore` (postgres.py, table `revenue_events`) implement it, and one
contract suite runs on both (tests/revenue/test_store.py).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from meterline.revenue.invoices import later
from meterline.revenue.model import MeteredInvoice, SubscriptionState


class RevenueEventStore(abc.ABC):
    @abc.abstractmethod
    def add(self, tenant_id: int, event_id: str, state: SubscriptionState) -> bool:
        """Keep the state a webhook event showed; False when that event id is already kept
        (a redelivery changes nothing)."""

    @abc.abstractmethod
    def replace(
        self,
        tenant_id: int,
        states: Sequence[tuple[str, SubscriptionState]],
        invoices: Sequence[MeteredInvoice] | None = None,
    ) -> None:
        """Replace every state of the tenant with `states` (event id, state) and, unless
        `invoices` is None, every invoice with `invoices`, atomically: a reader sees the old
        rows or the new ones, never a mix. Used by the rebuild."""

    @abc.abstractmethod
    def add_invoice(self, tenant_id: int, invoice: MeteredInvoice) -> bool:
        """Keep a closed invoice; one seen before keeps the sighting further along (its status
        never goes back: `invoices.later`). False when nothing changed."""

    @abc.abstractmethod
    def invoices(self, tenant_id: int) -> list[MeteredInvoice]:
        """The tenant's closed invoices in the order they closed (then by invoice id)."""

    @abc.abstractmethod
    def states(self, tenant_id: int) -> list[SubscriptionState]:
        """The tenant's states in time order; states of the same second in the order they were
        added (Stripe's `created` has whole seconds)."""


class MemoryRevenueEventStore(RevenueEventStore):
    def __init__(self) -> None:
        self._rows: dict[int, dict[str, SubscriptionState]] = {}
        self._invoices: dict[int, dict[str, MeteredInvoice]] = {}

    def add(self, tenant_id: int, event_id: str, state: SubscriptionState) -> bool:
        mine = self._rows.setdefault(tenant_id, {})
        if event_id in mine:
            return False
        mine[event_id] = state
        return True

    def replace(
        self,
        tenant_id: int,
        states: Sequence[tuple[str, SubscriptionState]],
        invoices: Sequence[MeteredInvoice] | None = None,
    ) -> None:
        self._rows[tenant_id] = dict(states)
        if invoices is not None:
            self._invoices[tenant_id] = {i.invoice: i for i in invoices}

    def add_invoice(self, tenant_id: int, invoice: MeteredInvoice) -> bool:
        mine = self._invoices.setdefault(tenant_id, {})
        kept = mine.get(invoice.invoice)
        chosen = invoice if kept is None else later(kept, invoice)
        mine[invoice.invoice] = chosen
        return chosen != kept

    def invoices(self, tenant_id: int) -> list[MeteredInvoice]:
        return sorted(self._invoices.get(tenant_id, {}).values(), key=lambda i: (i.at, i.invoice))

    def states(self, tenant_id: int) -> list[SubscriptionState]:
        mine = self._rows.get(tenant_id, {})
        return sorted(mine.values(), key=lambda s: s.at)  # stable: insertion order within a tie
