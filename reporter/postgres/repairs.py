"""What repairs read and write in Postgres: the report ledger's rows of an alert's window, the
customer's billing contexts, and a repair's ledger statuses with its log entry
(`reconciliation_repairs`) in one transaction."""

from __future__ import annotations

from datetime import datetime

from meterline.postgres import Pool
from reporter.contexts import ContextHistory
from reporter.ledger import LedgerRow
from reporter.postgres.alerts import insert_repair
from reporter.postgres.contexts import load_history
from reporter.postgres.ledger import PostgresReportLedger, mark_canceled, mark_received
from reporter.repairs import Repair


class PostgresRepairRecords:
    """`reporter.repairs.RepairRecords` in Postgres."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._ledger = PostgresReportLedger(pool)

    def window(
        self, tenant_id: int, customer: str, meter: str, start: datetime, end: datetime
    ) -> list[LedgerRow]:
        return self._ledger.window(tenant_id, customer, meter, start, end)

    def history(self, tenant_id: int, customer: str) -> ContextHistory:
        with self._pool.connection() as conn:
            return load_history(conn, tenant_id, [customer])

    def record(self, alert_id: int, repair: Repair, at: datetime) -> None:
        with self._pool.connection() as conn, conn.transaction():
            mark_canceled(conn, repair.canceled)
            mark_received(conn, repair.received, at)
            insert_repair(
                conn, alert_id, repair.action, repair.identifiers, repair.outcome, repair.actor
            )
