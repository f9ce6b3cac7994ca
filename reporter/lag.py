"""Stripe's processing delay, measured, and the reconciliation lag allowance that follows it.

After a push run that delivered events, one *probe* is recorded (if none is open): a sum
meter's hour that Stripe's summary must now show at least at what the ledger says it holds,
and when it was sent. Every scheduler tick (`resolve`, 15 s) reads the summary of the open
probe — one summaries call — and closes it once Stripe shows it: the delay is that moment
minus the send, to the tick. A probe not seen within a day is dropped (reconciliation raises
what Stripe lacks). The allowance is twice the longest of the last `SAMPLES` delays plus a
minute; before the first sample it is `stripe_lag_s`.

Known limit: one probe is open at a time and the delay is measured to the scheduler's tick
(15 s); a one-off slow summary doubles the allowance for the next 20 samples.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from psycopg_pool import ConnectionPool

from meterline.clock import Clock
from meterline.stripe.meter_events import (
    PermanentStripeError,
    TransientStripeError,
    same_under_quantum,
)
from meterline.stripe.summaries import SummaryReader
from reporter.ledger import LedgerRow
from reporter.slots import HOUR, floor_hour

log = logging.getLogger("reporter.lag")
SAMPLES = 20
GIVE_UP = timedelta(days=1)


class LagGauge:
    def __init__(
        self, pool: ConnectionPool, summaries: SummaryReader, clock: Clock, default_s: int
    ) -> None:
        self._pool = pool
        self._summaries = summaries
        self._clock = clock
        self._default = default_s

    def probe(self, row: LedgerRow, stripe_meter_id: str) -> None:
        """Open a probe on `row`'s hour if none is open and `row` was delivered."""
        hour = floor_hour(row.slot_start)
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO report_lag_probes (stripe_meter_id, stripe_customer_id, hour, "
                "expected, sent_at) "
                "SELECT %(meter)s, %(customer)s, %(hour)s, coalesce(sum(value), 0), %(now)s "
                "FROM report_ledger WHERE tenant_id = %(tenant)s AND customer = %(c)s "
                "AND meter = %(m)s AND slot_start >= %(hour)s AND slot_start < %(end)s "
                "AND status = 'sent' "
                "HAVING bool_or(identifier = %(ident)s) "
                "AND NOT EXISTS (SELECT 1 FROM report_lag_probes WHERE seen_at IS NULL)",
                {"meter": stripe_meter_id, "customer": row.stripe_customer_id, "hour": hour,
                 "end": hour + HOUR, "now": self._clock.now(), "tenant": row.tenant_id,
                 "c": row.customer, "m": row.meter, "ident": row.identifier},
            )  # fmt: skip

    def resolve(self) -> None:
        """Close the open probe if Stripe's summary shows it now. Never raises for Stripe."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT id, stripe_meter_id, stripe_customer_id, hour, expected, sent_at "
                "FROM report_lag_probes WHERE seen_at IS NULL ORDER BY id LIMIT 1"
            ).fetchone()
        if row is None:
            return
        probe_id, meter, customer, hour, expected, sent_at = row
        now = self._clock.now()
        start = int(hour.timestamp())
        try:
            held = self._summaries.hourly(meter, customer, start, start + 3600).get(start)
        except (PermanentStripeError, TransientStripeError) as exc:
            log.info("lag probe not read: %s", exc)
            return
        seen = held is not None and (held >= expected or same_under_quantum(held, expected))
        with self._pool.connection() as conn:
            if seen:
                conn.execute(
                    "UPDATE report_lag_probes SET seen_at = %s WHERE id = %s", (now, probe_id)
                )
            elif now - sent_at > GIVE_UP:
                conn.execute("DELETE FROM report_lag_probes WHERE id = %s", (probe_id,))

    def allowance_s(self) -> float:
        """Seconds to wait after an hour's end before reconciling it (see the module)."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT extract(epoch FROM seen_at - sent_at) FROM report_lag_probes "
                "WHERE seen_at IS NOT NULL ORDER BY seen_at DESC LIMIT %s",
                (SAMPLES,),
            ).fetchall()
        if not rows:
            return float(self._default)
        return 2 * max(max(float(r[0]) for r in rows), 0.0) + 60.0
