"""Fault injection for crash tests, enabled only by `METERLINE_REPORTER_CRASH_AFTER_SEND`.

`CrashingSender` wraps the real sender: after Stripe answered a send — and before the ledger
records the answer — it kills its own process with SIGKILL with the configured probability.
That is the worst moment for exactly-once, and the crash tests replay it many times.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Sequence

from meterline.stripe.meter_events import MeterEvent, MeterEventSender, SendResult


class CrashingSender(MeterEventSender):
    def __init__(self, inner: MeterEventSender, probability: float, rng: random.Random) -> None:
        self._inner = inner
        self._p = probability
        self._rng = rng

    def send(self, events: Sequence[MeterEvent], attempt: int = 0) -> list[SendResult]:
        results = self._inner.send(events, attempt)
        if self._rng.random() < self._p:
            os.kill(os.getpid(), signal.SIGKILL)
        return results

    def cancel(self, event_name: str, identifier: str) -> None:
        self._inner.cancel(event_name, identifier)
