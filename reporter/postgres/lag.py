"""Lag probes in Postgres (`report_lag_probes`): the store `reporter/lag.py` measures Stripe's
processing delay with. At most one probe is open (`seen_at` null) at a time."""

from __future__ import annotations

from datetime import datetime

from meterline.postgres import Pool
from reporter.lag import Probe
from reporter.ledger import LedgerRow
from reporter.slots import HOUR

_OPEN = """
INSERT INTO report_lag_probes (stripe_meter_id, stripe_customer_id, hour, expected, sent_at)
SELECT %(meter)s, %(customer)s, %(hour)s, coalesce(sum(value), 0), %(now)s
FROM report_ledger WHERE tenant_id = %(tenant)s AND customer = %(c)s
AND meter = %(m)s AND slot_start >= %(hour)s AND slot_start < %(end)s
AND status = 'sent'
HAVING bool_or(identifier = %(ident)s)
AND NOT EXISTS (SELECT 1 FROM report_lag_probes WHERE seen_at IS NULL)"""


class PostgresLagProbes:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def open(self, row: LedgerRow, stripe_meter_id: str, hour: datetime, now: datetime) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                _OPEN,
                {"meter": stripe_meter_id, "customer": row.stripe_customer_id, "hour": hour,
                 "end": hour + HOUR, "now": now, "tenant": row.tenant_id,
                 "c": row.customer, "m": row.meter, "ident": row.identifier},
            )  # fmt: skip

    def oldest_open(self) -> Probe | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT id, stripe_meter_id, stripe_customer_id, hour, expected, sent_at "
                "FROM report_lag_probes WHERE seen_at IS NULL ORDER BY id LIMIT 1"
            ).fetchone()
        return None if row is None else Probe(*row)

    def mark_seen(self, probe_id: int, at: datetime) -> None:
        with self._pool.connection() as conn:
            conn.execute("UPDATE report_lag_probes SET seen_at = %s WHERE id = %s", (at, probe_id))

    def drop(self, probe_id: int) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM report_lag_probes WHERE id = %s", (probe_id,))

    def delays_s(self, limit: int) -> list[float]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT extract(epoch FROM seen_at - sent_at) FROM report_lag_probes "
                "WHERE seen_at IS NOT NULL ORDER BY seen_at DESC LIMIT %s",
                (limit,),
            ).fetchall()
        return [float(r[0]) for r in rows]
