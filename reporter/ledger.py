"""The report ledger: every meter event we send to Stripe, written before the call.

A row is added as `pending` in its own committed transaction BEFORE the Stripe call and
settled (`sent`, or `rejected` with Stripe's reason) after Stripe answered. A crash in between
leaves `pending`; the next run resends those rows with the same identifier, and Stripe's
identifier dedupe (the duplicate-identifier 400, or the stream dropping the repeat) makes the
resend harmless. `canceled` rows were withdrawn from Stripe by a repair.

What a slot has *accounted for* (`Reported`) counts pending, sent and rejected rows alike — a
rejected row has raised its alert and is not sent again — but never canceled ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from meterline.stripe.meter_events import MeterEvent, SendResult
from reporter.slots import event_timestamp

SlotKey = tuple[str, str, datetime]


@dataclass(frozen=True, slots=True)
class LedgerRow:
    tenant_id: int
    customer: str
    meter: str
    slot_start: datetime
    revision: int
    identifier: str
    event_name: str
    stripe_customer_id: str
    value: Decimal
    total: Decimal
    status: str = "pending"
    error: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None

    def event(self) -> MeterEvent:
        return MeterEvent(
            self.event_name,
            self.stripe_customer_id,
            self.value,
            event_timestamp(self.slot_start, self.revision),
            self.identifier,
        )


@dataclass(frozen=True, slots=True)
class Reported:
    """What a slot has accounted for: its last revision, the sum of its values, the last value."""

    revision: int
    summed: Decimal
    last: Decimal


class ReportLedger(Protocol):
    """Where the ledger is kept (`reporter/postgres/ledger.py`)."""

    def reported(self, tenant_id: int, since: datetime, until: datetime) -> dict[SlotKey, Reported]:
        """Per slot starting in [since, until): see `Reported`."""

    def add(self, rows: Sequence[LedgerRow], at: datetime | None = None) -> None:
        """Insert rows in one committed transaction; they are durable on return. A row
        without `created_at` is dated `at` (the reporter's clock, which judges how long a row
        stayed unconfirmed), else now."""

    def settle(self, results: Sequence[SendResult], at: datetime | None = None) -> None:
        """Record Stripe's answers in one statement: landed events become `sent`, refused ones
        `rejected`; `sent_at` is `at` (the reporter's clock), else the database's."""

    def pending(self, tenants: Sequence[int] | None = None, limit: int = 10_000) -> list[LedgerRow]:
        """Rows written but not settled (a crash or an outage came in between), oldest first;
        only those of `tenants` when given."""

    def window(
        self, tenant_id: int, customer: str, meter: str, start: datetime, end: datetime
    ) -> list[LedgerRow]:
        """Every row of one customer's meter with a slot starting in [start, end)."""

    def customer_window(
        self, tenant_id: int, customer: str, start: datetime, end: datetime
    ) -> list[LedgerRow]:
        """Every row of one customer's slots starting in [start, end), all meters."""

    def tenant_window(self, tenant_id: int, start: datetime, end: datetime) -> list[LedgerRow]:
        """Every row of the tenant's slots starting in [start, end)."""

    def live_hours(
        self, tenant_id: int, hours: Sequence[tuple[str, datetime]]
    ) -> set[tuple[str, datetime]]:
        """The (customer, UTC hour) of `hours` (each given by any moment in it) whose hour
        holds rows Stripe has or may have (`sent` or `pending`); one query."""

    def mark_canceled(self, identifiers: Sequence[str]) -> None:
        """Rows Stripe canceled."""
