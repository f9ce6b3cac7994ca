"""What reconciliation reads and writes in Postgres beside the ledger and the contexts: the
tenants, our slots of a window (`reporter/postgres/rollups.py`'s queries, folded by
`reporter/rollups.py`), the days touched since a tenant's mark and the marks
(`report_reconcile_marks`). `reporter.reconcile.ReconcileRecords`."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from meterline.postgres import Pool
from reporter.postgres.rollups import slot_usage
from reporter.postgres.scope import tenant_ids
from reporter.rollups import period_maxima
from reporter.scope import TenantScope
from reporter.slots import SlotUsage

_TOUCHED = """
SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM usage_events
WHERE tenant_id = %(t)s AND received_at >= %(mark)s AND received_at < %(now)s
  AND day >= %(floor)s::date AND ts >= %(floor)s
UNION SELECT DISTINCT (slot_start AT TIME ZONE 'UTC')::date FROM report_ledger
WHERE tenant_id = %(t)s AND created_at >= %(mark)s AND created_at < %(now)s
  AND slot_start >= %(floor)s"""


class PostgresReconcileRecords:
    """`reporter.reconcile.ReconcileRecords` in Postgres."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def tenant_ids(self) -> list[int]:
        return tenant_ids(self._pool)

    def usage(self, scope: TenantScope, window: tuple[datetime, datetime]) -> list[SlotUsage]:
        with self._pool.connection() as conn:
            usage = slot_usage(conn, scope.tenant_id, window[0], window[1])
            return period_maxima(conn, scope, usage, window[0], window[0])

    def touched_days(
        self, tenant_id: int, horizon_s: int, margin: timedelta
    ) -> tuple[datetime, set[date]]:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT now(), "
                "(SELECT scanned_to FROM report_reconcile_marks WHERE tenant_id = %s)",
                (tenant_id,),
            ).fetchone()
            assert row is not None
            now, mark = row
            if mark is None:
                return now, set()
            floor = now - timedelta(seconds=horizon_s)
            params = {"t": tenant_id, "mark": mark - margin, "now": now, "floor": floor}
            rows = conn.execute(_TOUCHED, params).fetchall()
        return now, {r[0] for r in rows}

    def mark(self, tenant_id: int, scanned_to: datetime) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO report_reconcile_marks (tenant_id, scanned_to) VALUES (%s, %s) "
                "ON CONFLICT (tenant_id) DO UPDATE SET scanned_to = EXCLUDED.scanned_to",
                (tenant_id, scanned_to),
            )
