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
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from meterline.clock import Clock
from meterline.stripe.meter_events import (
    PermanentStripeError,
    TransientStripeError,
    same_under_quantum,
)
from meterline.stripe.summaries import SummaryReader
from reporter.ledger import LedgerRow
from reporter.slots import floor_hour

log = logging.getLogger("reporter.lag")
SAMPLES = 20
GIVE_UP = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Probe:
    """An open probe: Stripe's summary of `hour` must show at least `expected`."""

    id: int
    stripe_meter_id: str
    stripe_customer_id: str
    hour: datetime
    expected: Decimal
    sent_at: datetime


class LagProbes(Protocol):
    """Where probes are kept (`reporter/postgres/lag.py`)."""

    def open(self, row: LedgerRow, stripe_meter_id: str, hour: datetime, now: datetime) -> None:
        """Open a probe on `row`'s `hour` unless one is open or `row` is not sent; `expected`
        is what the ledger says Stripe holds of the hour."""

    def oldest_open(self) -> Probe | None: ...

    def mark_seen(self, probe_id: int, at: datetime) -> None: ...

    def drop(self, probe_id: int) -> None: ...

    def delays_s(self, limit: int) -> list[float]:
        """The `limit` newest delays (seen minus sent), in seconds."""


class LagGauge:
    def __init__(
        self, probes: LagProbes, summaries: SummaryReader, clock: Clock, default_s: int
    ) -> None:
        self._probes = probes
        self._summaries = summaries
        self._clock = clock
        self._default = default_s

    def probe(self, row: LedgerRow, stripe_meter_id: str) -> None:
        """Open a probe on `row`'s hour if none is open and `row` was delivered."""
        self._probes.open(row, stripe_meter_id, floor_hour(row.slot_start), self._clock.now())

    def resolve(self) -> None:
        """Close the open probe if Stripe's summary shows it now. Never raises for Stripe."""
        probe = self._probes.oldest_open()
        if probe is None:
            return
        now = self._clock.now()
        start = int(probe.hour.timestamp())
        try:
            summary = self._summaries.hourly(
                probe.stripe_meter_id, probe.stripe_customer_id, start, start + 3600
            )
        except (PermanentStripeError, TransientStripeError) as exc:
            log.info("lag probe not read: %s", exc)
            return
        held = summary.get(start)
        expected = probe.expected
        if held is not None and (held >= expected or same_under_quantum(held, expected)):
            self._probes.mark_seen(probe.id, now)
        elif now - probe.sent_at > GIVE_UP:
            self._probes.drop(probe.id)

    def allowance_s(self) -> float:
        """Seconds to wait after an hour's end before reconciling it (see the module)."""
        delays = self._probes.delays_s(SAMPLES)
        if not delays:
            return float(self._default)
        return 2 * max(max(delays), 0.0) + 60.0
