"""Pushing usage to Stripe: hourly slot pre-aggregates, corrections, and crash recovery.

A push run, for each tenant:
1. resends every `pending` ledger row first (a previous run crashed or Stripe was down) with
   the same identifier; Stripe recognises it, so nothing is counted twice;
2. recomputes every slot of the last `lookback_hours` (plus the hours that received late
   events since `late_scan_s`) from the minute rollups and compares it with what the ledger
   has accounted for. A difference becomes a new revision: for sum meters a correction event
   carrying the difference, for last-value meters the slot's new value;
3. writes the new revisions to the ledger (committed) and only then sends them;
4. records Stripe's answers in the ledger.
A slot older than Stripe's 35-day window is never sent: it is written to the ledger as
`rejected` and raises a `too_late_for_stripe` alert, so it is never dropped silently. A slot is
pushed once it has ended `settle_s` ago, so a period's last slot goes out minutes after the
period ends. Only one push runs at a time (a Postgres advisory lock). A run for some tenants
(`POST /v1/reports/run` pushes the caller's) resends and pushes only those tenants' rows.

Exactly once to Stripe, the rules and where each lives:
1. Every push is a *slot*: one customer's meter for one UTC hour, split in two by a
   billing-period boundary inside it; boundaries are minute-ceiled, so the usage of a period
   [start, end) is the minute buckets in [ceil_minute(start), ceil_minute(end)), exactly
   what the invoice bills (`slots.py`).
2. A new revision is written to `report_ledger` as `pending` (committed) before the call, with
   identifier `ml-<tenant>-<YYYYmmddHHMM>-<hash(customer, meter)>-r<revision>` and an
   Idempotency-Key derived from it and the attempt number; revision `r` is stamped `r - 1`
   seconds after the slot's start, capped at its 60th second (`slots.py`, `ledger.py`).
3. Stripe's answer settles the row (`sent` or `rejected`). A crash in between leaves
   `pending`; the next run resends the same identifier first: the first attempt replays
   Stripe's saved answer, later ones meet the duplicate-identifier 400, and both mean
   delivered. Rows unconfirmed for 23 h are not resent (Stripe dedupes for 24 h): they raise
   an alert instead.
4. Late events become correction revisions (the difference for sum and count meters, the new
   value for max and latest, whose Stripe formula is `last`). A sum that *decreases* is never
   sent: it raises `value_mismatch`.
5. `max` meters: Stripe has no max formula, so a max slot's value is the period-to-date
   maximum up to the slot's end (`rollups.period_maxima`) and the period's last event carries
   the period's maximum; a late hour that raises it recomputes every later slot of its period.
   A period starts at the customer's latest boundary in `report_boundaries` (else the UTC
   month's start); a plan change is a boundary too.
6. Values are quantized to Stripe's 15 significant digits, half to even
   (`meterline.stripe.meter_events.quantize`); the ledger records the quantized value, so the
   next correction of a sum slot carries the residue, and a slot equal to what was reported
   under the 15-digit rule gets no new revision.
7. Limits: token buckets below Stripe's (`meter_event_rate` 500/s, `stream_rate` 1,000
   requests/s); 429, 5xx and network errors retried with exponential backoff and full jitter,
   never sooner than `Retry-After` (`meterline/stripe/sending.py`); batches of
   `stream_threshold` (200) events or more go through the v2 meter event stream (100 events a
   request, its session token renewed when it expires), smaller ones through v1 for
   synchronous validation (`meterline/stripe/meter_events.py`).
8. Period end: the hourly push at hh:02 and a flush `settle_s` after each boundary once the
   aggregator is past it for that customer (`scheduler.py`).
9. A slot is billed by the billing context in force at its start (`contexts.py`).
10. A pushed hour is never re-split: a boundary learned late cancels the pushed slot or is
   moved to its end with a `split_after_push` alert, and a context change learned late nets
   out the later pushed slots of its hour too (`boundaries.py`).

Known limits: the v2 stream validates asynchronously, so an event Stripe later finds invalid
shows up at reconciliation, not at push time. A last-value slot with more than 60 revisions
stamps the later ones at its 60th second, where Stripe's tie-break decides again. A row
pending across the upgrade that introduced revision stamps is resent with a new timestamp:
Stripe's identifier dedupe still holds, but a replayed Idempotency-Key with the old parameters
answers `idempotency_error`, which settles the row as rejected with an alert.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from meterline.clock import Clock
from meterline.stripe.meter_events import (
    STRIPE_DEDUPE_HORIZON,
    STRIPE_PAST_WINDOW_S,
    Delivery,
    MeterEventSender,
    SendResult,
    TransientStripeError,
    quantize,
    same_under_quantum,
)
from reporter.alerts import Discrepancy, ReconciliationStore
from reporter.boundaries import BoundaryKeeper
from reporter.contexts import ContextHistory, ContextStore
from reporter.lag import LagGauge
from reporter.ledger import LedgerRow, Reported, ReportLedger, SlotKey
from reporter.metrics import ReporterMetrics
from reporter.scope import TenantScope
from reporter.settings import ReporterSettings
from reporter.slots import HOUR, SlotUsage, floor_hour, floor_minute, identifier, slot_end

log = logging.getLogger("reporter.push")
CHANGE_OVERLAP = timedelta(seconds=30)
"""How far before the last look `sync_changed` looks again (transactions in flight then)."""


@dataclass
class PushReport:
    slots: int = 0
    delivered: int = 0
    duplicates: int = 0
    rejected: int = 0
    too_late: int = 0
    resent: int = 0
    left_pending: int = 0
    skipped: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        return "partial" if self.left_pending or self.errors else "ok"


@dataclass
class Plan:
    rows: list[LedgerRow] = field(default_factory=list)
    alerts: list[Discrepancy] = field(default_factory=list)


class PushRecords(Protocol):
    """What a push reads beside the ledger and the contexts (`reporter/postgres/push.py`)."""

    def lock(self) -> AbstractContextManager[bool]:
        """The push lock, never waited for: True when held (released on exit)."""

    def tenant_ids(self) -> list[int]: ...

    def now(self) -> datetime:
        """The database's clock (what `subscriptions.updated_at` is stamped with)."""

    def changed_subscriptions(self, since: datetime) -> list[tuple[int, list[str]]]:
        """(tenant, customers) whose subscription row was updated at or after `since`."""

    def usage(
        self, scope: TenantScope, since: datetime, until: datetime, received_since: datetime
    ) -> list[SlotUsage]:
        """Every slot with usage in [since, until), and every slot of the earlier hours that
        received events since `received_since` (late arrivals), max meters' values as
        period-to-date maxima (`rollups.period_maxima`); on one connection."""


class Pusher:
    def __init__(
        self,
        records: PushRecords,
        ledger: ReportLedger,
        contexts: ContextStore,
        keeper: BoundaryKeeper,
        sender: MeterEventSender,
        settings: ReporterSettings,
        clock: Clock,
        store: ReconciliationStore,
        metrics: ReporterMetrics,
        lag: LagGauge | None = None,
    ) -> None:
        self._records = records
        self._ledger = ledger
        self._contexts = contexts
        self._keeper = keeper
        self._sender = sender
        self._lag = lag
        self._settings = settings
        self._clock = clock
        self._store = store
        self._metrics = metrics
        self._batch = settings.push_batch
        self._changes_seen: datetime | None = None

    def run(
        self, tenants: Sequence[int] | None = None, flush_until: datetime | None = None
    ) -> PushReport:
        """One push run over `tenants` (default: all), pending rows included: a run for one
        tenant resends and pushes that tenant's rows only. Never raises for Stripe outages:
        unsent rows stay pending and the report says so.

        `flush_until` pushes every slot with usage before that time even if the slot has not
        ended (a period closed early, a demo); later runs correct it with a new revision.
        """
        report = PushReport()
        with self._records.lock() as held:
            if not held:
                report.skipped = True
            else:
                self._resend_pending(report, tenants)
                for tenant_id in tenants if tenants is not None else self._records.tenant_ids():
                    if report.left_pending:
                        break
                    self._push_tenant(tenant_id, report, flush_until)
        self._metrics.push_runs.labels(report.status).inc()
        if report.status == "ok":
            self._metrics.last_success.labels("push").set(self._clock.now_ms() / 1000)
        return report

    def sync_changed(self) -> int:
        """Record the contexts of customers whose subscription changed since the last call
        (between pushes, so two changes an hour apart both leave a context); skipped while a
        push runs, which records them itself. A writer stamps `updated_at` when its transaction
        starts, which may be before the last call although it committed after: the window
        reaches `CHANGE_OVERLAP` further back (recording a context again changes nothing).
        Returns how many customers were looked at."""
        with self._records.lock() as held:
            if not held:
                return 0
            now, since = self._records.now(), self._changes_seen
            changed = self._records.changed_subscriptions((since or now) - CHANGE_OVERLAP)
            self._changes_seen = now
            for tenant_id, customers in changed:
                self._keeper.sync(tenant_id, customers)
            return sum(len(c) for _, c in changed)

    def _resend_pending(self, report: PushReport, tenants: Sequence[int] | None) -> None:
        rows = self._ledger.pending(tenants)
        horizon = self._clock.now() - STRIPE_DEDUPE_HORIZON
        stale = [r for r in rows if r.created_at is not None and r.created_at < horizon]
        if stale:
            self._give_up(stale)
        fresh = [r for r in rows if r not in stale]
        report.resent += len(fresh)
        self._send(fresh, report)

    def _give_up(self, rows: Sequence[LedgerRow]) -> None:
        """Rows unconfirmed for 23 h are not resent (Stripe may have forgotten the identifier):
        they are settled as rejected and reconciliation shows whether Stripe holds them."""
        reason = "unconfirmed for 23 h; not resent to avoid a double count"
        self._ledger.settle([SendResult(r.identifier, Delivery.REJECTED, reason) for r in rows])
        for tenant_id in {r.tenant_id for r in rows}:
            mine = [r for r in rows if r.tenant_id == tenant_id]
            self._store.record(tenant_id, None, [_rejected_alert(r, reason) for r in mine])

    def _push_tenant(
        self, tenant_id: int, report: PushReport, flush_until: datetime | None = None
    ) -> None:
        history = self._keeper.sync(tenant_id)
        if not history.contexts:
            return
        now = self._clock.now()
        until = flush_until or floor_minute(now - timedelta(seconds=self._settings.settle_s))
        since = floor_hour(until - timedelta(hours=self._settings.lookback_hours))
        scan_from = now - timedelta(seconds=self._settings.late_scan_s)
        usage = self._records.usage(history.scope(), since, until, scan_from)
        if not usage:
            return
        oldest = min([since, *(u.start for u in usage)])
        reported = self._ledger.reported(tenant_id, oldest, until)
        floor = now - timedelta(
            seconds=STRIPE_PAST_WINDOW_S - self._settings.stripe_window_margin_s
        )
        boundaries = self._contexts.boundaries(tenant_id)
        plan = plan_revisions(
            history, usage, reported, boundaries, until, floor, flush_until is not None
        )
        report.slots += len(plan.rows)
        self._ledger.add(plan.rows, self._clock.now())
        if plan.alerts:
            self._store.record(tenant_id, None, plan.alerts)
        too_late = sum(1 for r in plan.rows if r.status == "rejected")
        report.too_late += too_late
        self._metrics.events.labels("too_late").inc(too_late)
        self._send([r for r in plan.rows if r.status == "pending"], report)
        self._probe(history, plan.rows)

    def _probe(self, history: ContextHistory, rows: Sequence[LedgerRow]) -> None:
        """Offer the run's last sum row to the lag gauge (it keeps one probe open)."""
        sums = [r for r in rows if r.status == "pending"]
        for row in reversed(sums):
            meter = history.meter(row.customer, row.meter, row.slot_start)
            if self._lag is not None and meter is not None and meter.formula == "sum":
                self._lag.probe(row, meter.stripe_meter_id)
                return

    def _send(self, rows: Sequence[LedgerRow], report: PushReport) -> None:
        for start in range(0, len(rows), self._batch):
            chunk = rows[start : start + self._batch]
            try:
                results = self._sender.send([r.event() for r in chunk])
            except TransientStripeError as exc:
                self._settle(exc.done, chunk, report)
                report.left_pending += len(rows) - start - len(exc.done)
                report.errors.append(str(exc))
                log.warning("stripe unavailable; %d events left pending", report.left_pending)
                return
            self._settle(results, chunk, report)

    def _settle(
        self, results: Sequence[SendResult], rows: Sequence[LedgerRow], report: PushReport
    ) -> None:
        self._ledger.settle(results, self._clock.now())
        by_id = {r.identifier: r for r in rows}
        rejected = []
        for result in results:
            self._metrics.events.labels(result.delivery.value).inc()
            if result.delivery is Delivery.DELIVERED:
                report.delivered += 1
            elif result.delivery is Delivery.DUPLICATE:
                report.duplicates += 1
            else:
                report.rejected += 1
                rejected.append((by_id[result.identifier], result.error or "rejected"))
        for row, reason in rejected:
            self._store.record(row.tenant_id, None, [_rejected_alert(row, reason)])


def plan_revisions(
    history: ContextHistory,
    usage: Sequence[SlotUsage],
    reported: dict[SlotKey, Reported],
    boundaries: dict[str, list[datetime]],
    until: datetime,
    stripe_floor: datetime,
    partial: bool = False,
) -> Plan:
    """New ledger revisions for every complete slot whose value differs from what is reported.

    Each slot is billed by its own context (`history.at(customer, slot start)`): the plan,
    price and Stripe customer in force when its usage happened; a slot whose context bills
    nothing for the meter is not sent. Only complete slots (ended by `until`) unless
    `partial`. See `revision_value` for what a
    revision carries. A decrease of a sum meter is never sent (Stripe sums cannot go down
    without a cancel): it raises a `value_mismatch` alert for a person to decide. Pure: reads
    nothing, writes nothing.
    """
    plan = Plan()
    for u in usage:
        context = history.at(u.customer, u.start)
        meter = None if context is None else context.meters.get(u.meter)
        window = (u.start, slot_end(u.start, boundaries.get(u.customer, ())))
        if context is None or meter is None or not (window[1] <= until or partial):
            continue
        prev = reported.get((u.customer, u.meter, u.start))
        value = u.value(meter.aggregation)
        summed = prev.summed if prev else Decimal(0)
        delta = revision_value(meter.formula, value, prev)
        if delta is None:
            continue
        if delta < 0:
            plan.alerts.append(_decrease_alert(u, meter, summed, value, window))
            continue
        too_late = u.start < stripe_floor
        revision = (prev.revision if prev else 0) + 1
        row = LedgerRow(
            history.tenant_id, u.customer, u.meter, u.start, revision,
            identifier(history.tenant_id, u.customer, u.meter, u.start, revision),
            meter.event_name, context.stripe_customer_id, delta, value,
            "rejected" if too_late else "pending",
            "too_late_for_stripe" if too_late else None,
        )  # fmt: skip
        plan.rows.append(row)
        if too_late:
            plan.alerts.append(_late_alert(u, meter, summed, value, delta, window))
    return plan


def revision_value(formula: str, value: Decimal, prev: Reported | None) -> Decimal | None:
    """What a new revision of a slot sends, quantized as Stripe will hold it; None when the
    slot already accounts for `value` (equal under the 15-digit rule, `same_under_quantum`).

    Sum meters send the difference from what the slot's revisions summed (negative: a
    decrease, never sent); the ledger records the quantized difference, so a rounding residue
    is carried by the next correction, not lost. Last-value meters send the value itself.
    """
    if formula == "sum":
        summed = prev.summed if prev else Decimal(0)
        if same_under_quantum(value, summed):
            return None
        return quantize(value - summed)
    if prev is not None and same_under_quantum(value, prev.last):
        return None
    return quantize(value)


def _late_alert(
    u: SlotUsage, meter: object, summed: Decimal, value: Decimal, delta: Decimal,
    window: tuple[datetime, datetime],
) -> Discrepancy:  # fmt: skip
    return Discrepancy(
        "too_late_for_stripe", u.customer, u.meter, window[0], window[1], value, summed, None,
        -delta, getattr(meter, "unit_amount_decimal", None), getattr(meter, "currency", None),
        "usage older than Stripe's 35-day window: bill it by hand (invoice item) or write it off",
    )  # fmt: skip


def _decrease_alert(
    u: SlotUsage, meter: object, summed: Decimal, value: Decimal, window: tuple[datetime, datetime]
) -> Discrepancy:
    return Discrepancy(
        "value_mismatch", u.customer, u.meter, window[0], window[1], value, summed, None,
        summed - value, getattr(meter, "unit_amount_decimal", None),
        getattr(meter, "currency", None),
        "our count is now below what was reported; cancel within 24 h or credit the customer",
    )  # fmt: skip


def _rejected_alert(row: LedgerRow, reason: str) -> Discrepancy:
    return Discrepancy(
        "rejected_by_stripe", row.customer, row.meter, row.slot_start,
        floor_hour(row.slot_start) + HOUR, row.total, row.value, None, -row.value,
        detail=f"{row.identifier}: {reason}",
    )  # fmt: skip
