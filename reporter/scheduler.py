"""The reporter's clockwork: hourly pushes, period-end flushes, nightly reconciliation.

A background thread wakes every `tick_s` seconds and decides, from the injectable clock:
- a push when the push interval has passed (aligned on the interval, plus `settle_s`, so the
  hourly push runs at hh:02 by default);
- a push when a billing-period boundary passed `settle_s` ago (the period's last slot goes to
  Stripe within minutes, well before Stripe finalizes the invoice, an hour after period end);
- once a day at `reconcile_hour_utc`, a reconciliation of the previous UTC day.
A failing job is logged and retried on its next occasion; it never stops the thread.
`stop()` lets a job in progress finish (SIGTERM drains).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta

from psycopg_pool import ConnectionPool

from meterline.clock import Clock
from reporter.settings import ReporterSettings

log = logging.getLogger("reporter.scheduler")


class Scheduler:
    def __init__(
        self,
        settings: ReporterSettings,
        clock: Clock,
        pool: ConnectionPool,
        push: Callable[[], object],
        reconcile: Callable[[date], object],
        tick_s: float = 15.0,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._pool = pool
        self._push = push
        self._reconcile = reconcile
        self._tick = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_push_slot: int | None = None
        self._last_boundary_check: datetime | None = None
        self._last_reconciled: date | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reporter-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduled job failed")
            self._stop.wait(self._tick)

    def tick(self) -> None:
        """Run whatever is due now (public for tests, which drive it with a fake clock)."""
        now = self._clock.now()
        if self._push_due(now) or self._boundary_passed(now):
            self._push()
        if self._reconcile_due(now):
            self._reconcile(now.date() - timedelta(days=1))
            self._last_reconciled = now.date()

    def _push_due(self, now: datetime) -> bool:
        interval = self._settings.push_interval_s
        slot = int((now.timestamp() - self._settings.settle_s) // interval)
        if slot == self._last_push_slot:
            return False
        self._last_push_slot = slot
        return True

    def _boundary_passed(self, now: datetime) -> bool:
        cutoff = now - timedelta(seconds=self._settings.settle_s)
        previous, self._last_boundary_check = self._last_boundary_check, cutoff
        if previous is None:
            return False
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM report_boundaries WHERE at > %s AND at <= %s LIMIT 1",
                (previous, cutoff),
            ).fetchone()
        return row is not None

    def _reconcile_due(self, now: datetime) -> bool:
        if now.hour < self._settings.reconcile_hour_utc:
            return False
        return self._last_reconciled != now.date()
