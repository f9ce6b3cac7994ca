"""The reporter's clockwork: hourly pushes, period-end flushes, nightly reconciliation.

A background thread wakes every `tick_s` seconds and decides, from the injectable clock:
- a push when the push interval has passed (aligned on the interval, plus `settle_s`, so the
  hourly push runs at hh:02 by default);
- a push when a billing-period boundary passed `settle_s` ago and the aggregator is past it
  for the customer whose period ended (the period's last slot goes to Stripe within minutes,
  well before Stripe finalizes the invoice, an hour after period end). *Past the boundary*
  means Postgres holds an event of that customer that ingest received at or after the
  boundary: a customer's events share one Kafka key and partition, consumed in receive
  order, so everything it sent before is committed too. A boundary not passed within
  `flush_wait_s` (30 min, inside Stripe's hour of grace) is flushed anyway (a customer quiet
  since its boundary cannot prove more); if the aggregator committed no event received after
  the boundary at all, it is stalled or idle and `on_blocked` raises an alert first;
- once a day at `reconcile_hour_utc`, a reconciliation of the previous UTC day (and of the
  days touched since the last one);
- `on_tick` every tick (contexts of changed subscriptions; the lag gauge's probe).
A failing job is logged and retried on its next occasion; it never stops the thread.
`stop()` lets a job in progress finish (SIGTERM drains).

With several replicas, `leader` (meterline/postgres/leadership.py) says on each tick whether
this one runs the schedule; the others tick idle. A replica that becomes the leader starts as a
fresh scheduler would: its first tick pushes (the report ledger makes that push send only what the
previous leader had not), and it queues again the boundaries of the last `flush_wait_s` whose
period-end flush may still be waiting for the aggregator.

Known limit: "past the boundary" is proven only by the customer's own event received after
it (another customer's event may come from a partition that is ahead, so it proves nothing).
A customer quiet since its boundary waits `flush_wait_s` for its flush; if the aggregator
still held that customer's events then, they go out with the next hourly push as a late
correction (after finalization: an `after_invoice_finalized` alert). A tighter proof would
need the aggregator to record, per partition, the newest receive time it committed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Protocol

from meterline.clock import Clock
from reporter.settings import ReporterSettings

log = logging.getLogger("reporter.scheduler")
Waiting = tuple[int, str, datetime]  # (tenant, customer, boundary) queued for a flush


class FlushWatch(Protocol):
    """What the scheduler reads to time period-end flushes (`reporter/postgres/flushes.py`)."""

    def boundaries(self, after: datetime, until: datetime) -> list[Waiting]:
        """The billing boundaries recorded in (`after`, `until`], oldest first."""

    def customers_past(self, waiting: list[Waiting]) -> set[Waiting]:
        """The boundaries whose customer has an event counted that ingest received at or
        after the boundary."""

    def any_past(self, at: datetime) -> bool:
        """Some event received at or after `at` is counted: the aggregator is moving."""


class Scheduler:
    def __init__(
        self,
        settings: ReporterSettings,
        clock: Clock,
        watch: FlushWatch,
        push: Callable[[], object],
        reconcile: Callable[[date], object],
        tick_s: float = 15.0,
        on_blocked: Callable[[int, str, datetime], object] | None = None,
        on_tick: Callable[[], object] | None = None,
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._watch = watch
        self._push = push
        self._reconcile = reconcile
        self._tick = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_push_slot: int | None = None
        self._last_boundary_check: datetime | None = None
        self._last_reconciled: date | None = None
        self._waiting: list[Waiting] = []
        self._on_blocked = on_blocked or (lambda tenant, customer, at: None)
        self._on_tick = on_tick or (lambda: None)
        self._leader = leader or (lambda: True)
        self._leading = False

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
                if self._lead():
                    self.tick()
            except Exception:
                log.exception("scheduled job failed")
            self._stop.wait(self._tick)

    def _lead(self) -> bool:
        """Whether this replica runs the schedule now; on becoming the leader, the next push
        is due at once."""
        leading, was = self._leader(), self._leading
        self._leading = leading
        if leading and not was:
            self._last_push_slot = self._last_boundary_check = None
            self._waiting = []
        return leading

    def tick(self) -> None:
        """Run whatever is due now (public for tests, which drive it with a fake clock)."""
        now = self._clock.now()
        self._on_tick()
        self._boundary_passed(now)
        if self._push_due(now) | self._flush_due(now):
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

    def _boundary_passed(self, now: datetime) -> None:
        """Queue the boundaries that passed `settle_s` ago since the last tick."""
        cutoff = now - timedelta(seconds=self._settings.settle_s)
        previous, self._last_boundary_check = self._last_boundary_check, cutoff
        if previous is None:  # a fresh start or a new leader: look back at what may be due
            previous = cutoff - timedelta(seconds=self._lookback_s())
        self._waiting += self._watch.boundaries(previous, cutoff)

    def _lookback_s(self) -> float:
        """How far a fresh scheduler looks back for boundaries: those whose flush may still be
        waiting for the aggregator (the replica before it died, or this process restarted,
        before flushing them), and none whose wait already ended (those were flushed or
        alerted on)."""
        return max(0, self._settings.flush_wait_s - self._settings.settle_s)

    def _flush_due(self, now: datetime) -> bool:
        """True when a queued boundary's customer is past the aggregator, or the boundary
        waited `flush_wait_s` (then, if the aggregator is past it for no customer at all,
        `on_blocked` is called for it first)."""
        due = False
        passed = self._customers_past(self._waiting)
        for key in list(self._waiting):
            tenant, customer, at = key
            if key in passed:
                due = True
                self._waiting.remove(key)
            elif now >= at + timedelta(seconds=self._settings.flush_wait_s):
                if not self._any_past(at):
                    log.warning(
                        "aggregator not past %s after %d s", at, self._settings.flush_wait_s
                    )
                    self._on_blocked(tenant, customer, at)
                due = True
                self._waiting.remove(key)
        return due

    def _customers_past(self, waiting: list[Waiting]) -> set[Waiting]:
        """The boundaries whose customer has an event in Postgres that ingest received at or
        after the boundary (one query for all). A customer's events share one Kafka key,
        hence one partition, consumed in receive order: all it sent before is committed too.
        Another customer's event proves nothing (its partition may be ahead of this one's)."""
        return self._watch.customers_past(waiting) if waiting else set()

    def _any_past(self, at: datetime) -> bool:
        """Postgres holds some event received at or after `at`: the aggregator is moving."""
        return self._watch.any_past(at)

    def _reconcile_due(self, now: datetime) -> bool:
        if now.hour < self._settings.reconcile_hour_utc:
            return False
        return self._last_reconciled != now.date()
