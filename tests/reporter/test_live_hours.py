"""`PostgresReportLedger.live_hours` against a real Postgres: the (customer, hour) pairs whose
hour holds rows Stripe has or may have (`sent`, `pending`), for one tenant; each pair probed by
index (its plan: tests/integration/test_plans.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from meterline.postgres import open_pool
from reporter.ledger import LedgerRow
from reporter.postgres.ledger import PostgresReportLedger


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 6, hour, minute, tzinfo=UTC)


def row(tenant: int, customer: str, slot: datetime, status: str, ident: str) -> LedgerRow:
    one = Decimal(1)
    return LedgerRow(tenant, customer, "api", slot, 1, ident, "api", "cus", one, one, status)


def test_live_hours_are_the_asked_hours_holding_sent_or_pending_rows(pg_conninfo: str) -> None:
    with open_pool(pg_conninfo, max_size=1) as pool:
        with pool.connection() as conn:
            conn.execute("INSERT INTO tenants (name) VALUES ('acme'), ('globex')")
        ledger = PostgresReportLedger(pool)
        ledger.add(
            [
                row(1, "a", at(10, 15), "sent", "i1"),
                row(1, "a", at(11, 30), "canceled", "i2"),
                row(1, "a", at(12), "pending", "i3"),
                row(1, "b", at(10), "rejected", "i4"),
                row(2, "a", at(13), "sent", "i5"),
            ]
        )
        asked = [("a", at(10, 40)), ("a", at(10)), ("a", at(11, 5)), ("a", at(12, 59))]
        asked += [("b", at(10)), ("a", at(13, 10)), ("c", at(10))]
        assert ledger.live_hours(1, asked) == {("a", at(10)), ("a", at(12))}
        assert ledger.live_hours(1, []) == set()
