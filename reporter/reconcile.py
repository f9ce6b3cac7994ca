"""Nightly reconciliation: our rollups, the report ledger and Stripe's summaries, hour by hour.

For one UTC day (clipped to hours that ended at least `stripe_lag_s` ago, so Stripe's
asynchronous processing has caught up), for every billed customer and meter:
- *ours*: the slot values from the minute rollups, folded per hour (for max meters the
  period-to-date maximum, as pushed);
- *sent*: what the report ledger says Stripe should hold (sent rows, and pending rows past
  their retry horizon; rows still pending within it are *in flight*, which Stripe may or may
  not hold yet; rows Stripe rejected or that were too late have their own alerts and are
  counted apart). Each row is attributed to its own slot's context, as ours is: a row of a
  slot no context bills (pushed before a cancellation was learned, too late to cancel:
  `boundaries.py`) is *stray*, held by Stripe and billed by no invoice, so it is compared
  with Stripe but not with ours;
- *Stripe*: the meter's event summaries for the customer, grouped by hour.
`classify` turns each hour's three figures into discrepancies (see its docstring). Each one
becomes an alert with its money (`money.py`); a run that finds nothing raises nothing
and clears the live alerts of its window that are no longer observed.

When: nightly at `reconcile_hour_utc` (02:00) for the previous UTC day and every day touched
since the tenant's last nightly run (`touched_days`: events received or ledger rows written
since its mark in `report_reconcile_marks`, within Stripe's 35 days; events by their receive
time, from `COMMIT_MARGIN` (6 h) before the mark, since a row is committed after its event was
received; the mark moves only when every run of the tenant finished); or on demand
(`meterline reconcile run --date D`, `POST /v1/reconciliation/runs`). Only hours that ended
the lag allowance ago are compared: `lag.py` measures Stripe's processing delay. Rows still
`pending` within their 23 h retry horizon are in flight; past it they count as sent, so a
Stripe outage raises nothing. Figures are equal when they agree within one unit in their 15th
significant digit (`quantum`): twice the quantizing error, which also covers Stripe's float
`aggregated_value`. `after_invoice_finalized` reads invoices only for customers with rows
received after their period's end (one `invoices.list` call each), never per row. The kinds
of alert and their differences are tabled in `alerts.py`.

Known limits: days touched are found by scanning the events received since 6 h before the
mark in the last 35 day partitions (through the BRIN index on `received_at`), once a night,
the same scan the push's late-hours query makes every hour; an aggregator backlog longer than
6 h escapes it. Reconciliation makes one summaries call per (customer, meter) and day: 30,000
calls for 10,000 customers x 3 meters, bounded by `summary_rate` and `summary_workers`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from meterline.clock import Clock
from meterline.stripe.meter_events import (
    STRIPE_DEDUPE_HORIZON,
    STRIPE_PAST_WINDOW_S,
    TransientStripeError,
    same_under_quantum,
)
from meterline.stripe.summaries import SummaryReader
from reporter.alerts import Discrepancy, ReconciliationStore
from reporter.contexts import ContextHistory, ContextStore
from reporter.lag import LagGauge
from reporter.ledger import LedgerRow, ReportLedger
from reporter.metrics import ReporterMetrics
from reporter.notify import Notifier
from reporter.scope import BilledMeter, TenantScope
from reporter.settings import ReporterSettings
from reporter.slots import HOUR, SlotUsage, floor_hour

log = logging.getLogger("reporter.reconcile")
PairKey = tuple[str, str]


@dataclass
class HourFigures:
    """One hour's figures. `sent` is what Stripe confirmed (or what a row pending past its
    retry horizon should have left there); `in_flight` what pending rows still being retried
    carry; `stray` what Stripe holds for slots of the hour no context bills (pushed before
    the change that ended their billing was learned, too late to cancel: Stripe holds them,
    no invoice bills them, and they are not ours to account for); for last-value meters each
    holds the newest value, not a sum (`stray` only while a stray row is the hour's newest)."""

    ours: Decimal = Decimal(0)
    sent: Decimal = Decimal(0)
    unsent: Decimal = Decimal(0)
    stripe: Decimal = Decimal(0)
    sent_values: list[Decimal] = field(default_factory=list)
    in_flight: Decimal | None = None
    stray: Decimal | None = None

    def accounted(self) -> Decimal:
        """What the ledger holds for the hour, whatever became of it at Stripe."""
        return self.sent + (self.in_flight or 0) + self.unsent


def classify(f: HourFigures, formula: str = "sum") -> list[tuple[str, Decimal, Decimal]]:
    """Discrepancies of one hour as (kind, difference, stripe units).

    Figures are equal when they agree under Stripe's 15-digit rule (`same_under_quantum`):
    Stripe answers floats, and we send quantized values. Rows in flight (pending within their
    retry horizon) are not missing: Stripe may hold what was confirmed, or that plus what is
    in flight, and neither raises anything. Otherwise Stripe is compared with all we sent:
    Stripe holding nothing of it is `missing_in_stripe`; Stripe short by exactly one of our
    events is `missing_in_stripe` too (an event lost); Stripe over by exactly one of our
    events, or holding usage we never sent, is `extra_in_stripe` (an event counted twice, or
    one that is not ours); any other gap is `value_mismatch`. Difference = Stripe - sent.
    Then ours against what we accounted for (sent, in flight and rejected): a gap is
    `not_reported`, difference = accounted - ours.
    """
    found: list[tuple[str, Decimal, Decimal]] = []
    expected = _expected(f, formula)
    if not any(same_under_quantum(f.stripe, e) for e in expected):
        gap = f.stripe - expected[-1]
        found.append((_stripe_kind(f, gap, expected[-1]), gap, f.stripe))
    accounted = f.accounted() if formula == "sum" else _newest(f)
    if not same_under_quantum(accounted, f.ours):
        found.append(("not_reported", accounted - f.ours, f.stripe))
    return found


def _expected(f: HourFigures, formula: str) -> list[Decimal]:
    """What Stripe may hold for the hour: confirmed only, then with what is in flight; stray
    rows are held either way."""
    if formula != "sum" and f.stray is not None:
        return [f.stray]
    held = f.sent + (f.stray or 0) if formula == "sum" else f.sent
    if f.in_flight is None:
        return [held]
    return [held, held + f.in_flight if formula == "sum" else f.in_flight]


def _newest(f: HourFigures) -> Decimal:
    return f.in_flight if f.in_flight is not None else f.sent + f.unsent


def _stripe_kind(f: HourFigures, gap: Decimal, sent: Decimal) -> str:
    def one_event(amount: Decimal) -> bool:
        return any(same_under_quantum(amount, v) for v in f.sent_values)

    if gap < 0:
        return "missing_in_stripe" if f.stripe == 0 or one_event(-gap) else "value_mismatch"
    return "extra_in_stripe" if sent == 0 or one_event(gap) else "value_mismatch"


@dataclass(frozen=True)
class RunResult:
    tenant_id: int
    run_id: int | None
    window: tuple[datetime, datetime]
    hours_checked: int
    discrepancies: list[Discrepancy]
    opened: list[int]
    finished: bool = True


COMMIT_MARGIN = timedelta(hours=6)
"""How long after ingest received an event its ledger row may be committed and still be found
by the nightly scan of touched days (an aggregator backlog longer than this escapes it)."""


class ReconcileRecords(Protocol):
    """What reconciliation reads and marks beside the ledger and the contexts
    (`reporter/postgres/reconcile.py`)."""

    def tenant_ids(self) -> list[int]: ...

    def usage(self, scope: TenantScope, window: tuple[datetime, datetime]) -> list[SlotUsage]:
        """Our slots with usage in `window`, max meters' values as period-to-date maxima
        (`rollups.period_maxima`)."""

    def touched_days(
        self, tenant_id: int, horizon_s: int, margin: timedelta
    ) -> tuple[datetime, set[date]]:
        """(now, the UTC days that received events or ledger rows since the tenant's mark,
        within `horizon_s`): the days whose figures may have changed since they were
        reconciled. Events are found by the time ingest received them, which comes before
        their ledger row is committed; the scan therefore reaches `margin` before the mark, so
        an event the aggregator committed up to that long after receiving it is not missed
        (reconciling a day again is harmless). No mark yet: no days (the first run sets it)."""

    def mark(self, tenant_id: int, scanned_to: datetime) -> None:
        """Move the tenant's mark (`touched_days` scans from it next time)."""


class Reconciler:
    def __init__(
        self,
        records: ReconcileRecords,
        ledger: ReportLedger,
        contexts: ContextStore,
        summaries: SummaryReader,
        settings: ReporterSettings,
        clock: Clock,
        store: ReconciliationStore,
        metrics: ReporterMetrics,
        notifier: Notifier,
        lag: LagGauge | None = None,
    ) -> None:
        self._records = records
        self._ledger = ledger
        self._contexts = contexts
        self._summaries = summaries
        self._settings = settings
        self._clock = clock
        self._store = store
        self._metrics = metrics
        self._notifier = notifier
        self._lag = lag

    def window(self, day: date) -> tuple[datetime, datetime]:
        """The day's hours that Stripe has had time to summarize: ended the lag allowance ago
        (measured by the lag gauge, else `stripe_lag_s`)."""
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        lag = self._lag.allowance_s() if self._lag else self._settings.stripe_lag_s
        settled = floor_hour(self._clock.now() - timedelta(seconds=lag))
        return start, min(start + timedelta(days=1), settled)

    def run(
        self, day: date, trigger: str = "manual", tenants: Sequence[int] | None = None
    ) -> list[RunResult]:
        """Reconcile `day` for each tenant (default: all); raises only for Postgres failures."""
        window = self.window(day)
        if window[1] <= window[0]:
            return []
        results = [
            self._tenant(tenant_id, window, trigger)
            for tenant_id in (tenants if tenants is not None else self._records.tenant_ids())
        ]
        self._metrics.open_alerts.set(self._store.open_count())
        return results

    def run_due(self, day: date, trigger: str = "scheduled") -> list[RunResult]:
        """The nightly run: `day` and, per tenant, every earlier day touched since the
        tenant's last nightly run (`touched_days`), oldest first; later days wait for their own
        night. The tenant's mark moves only when all its runs finished, so the days of a failed
        night are found again. Raises only for Postgres failures."""
        results = []
        for tenant_id in self._records.tenant_ids():
            scanned_to, days = self._records.touched_days(
                tenant_id, STRIPE_PAST_WINDOW_S, COMMIT_MARGIN
            )
            tenant_results = [
                self._tenant(tenant_id, window, trigger)
                for window in map(self.window, sorted({d for d in days if d < day} | {day}))
                if window[1] > window[0]
            ]
            results += tenant_results
            if not all(r.finished for r in tenant_results):
                continue
            self._records.mark(tenant_id, scanned_to)
        self._metrics.open_alerts.set(self._store.open_count())
        return results

    def _tenant(self, tenant_id: int, window: tuple[datetime, datetime], trigger: str) -> RunResult:
        run_id = self._store.start_run(tenant_id, window, trigger)
        try:
            history = self._contexts.history(tenant_id)
            found, hours, ours, theirs = self._compare(history, window)
        except Exception as exc:
            self._store.finish_run(run_id, 0, Decimal(0), Decimal(0), 0, str(exc) or repr(exc))
            self._metrics.reconcile_runs.labels("failed").inc()
            log.exception("reconciliation of tenant %s failed", tenant_id)
            return RunResult(tenant_id, run_id, window, 0, [], [], finished=False)
        opened, seen = self._store.record(tenant_id, run_id, found)
        self._store.clear(tenant_id, run_id, window, seen)
        self._store.finish_run(run_id, hours, ours, theirs, len(found))
        self._metrics.reconcile_runs.labels("alerts" if found else "ok").inc()
        self._metrics.last_success.labels("reconcile").set(self._clock.now_ms() / 1000)
        if opened:
            alerts = [self._store.alert(tenant_id, i) for i in opened]
            self._notifier.alerts_opened(tenant_id, run_id, alerts)
        return RunResult(tenant_id, run_id, window, hours, found, opened)

    def _compare(
        self, history: ContextHistory, window: tuple[datetime, datetime]
    ) -> tuple[list[Discrepancy], int, Decimal, Decimal]:
        figures: dict[PairKey, dict[datetime, HourFigures]] = defaultdict(dict)
        self._add_ours(history, window, figures)
        rows = self._add_sent(history, window, figures)
        pairs = sorted(_billed_pairs(history, window))
        with ThreadPoolExecutor(self._settings.summary_workers) as pool:
            answers = pool.map(lambda p: self._stripe(p[2], p[3], window), pairs)
            for (customer, meter, _, _), stripe in zip(pairs, answers, strict=True):
                for hour, value in stripe.items():
                    _hour(figures, (customer, meter), hour).stripe += value
        found: list[Discrepancy] = []
        hours = 0
        ours = theirs = Decimal(0)
        for (customer_key, meter_key), by_hour in sorted(figures.items()):
            for hour, f in sorted(by_hour.items()):
                billed = _billed_in(history, customer_key, meter_key, hour)
                if billed is None:
                    continue
                hours += 1
                ours += f.ours
                theirs += f.stripe
                found.extend(_discrepancies(customer_key, billed, hour, f))
        found.extend(self._after_finalized(history, rows))
        return found, hours, ours, theirs

    def _after_finalized(
        self, history: ContextHistory, rows: Sequence[LedgerRow]
    ) -> list[Discrepancy]:
        """Usage Stripe received after the invoice of its period was finalized: Stripe's
        summaries hold it, the invoice never will. Only rows received after their period's
        end are candidates, and only their customers' invoices are read (one call each)."""
        bounds = self._contexts.boundaries(history.tenant_id)
        late = [r for r in rows if _after_period_end(r, bounds.get(r.customer, ()))]
        invoices = {c: self._finalized(c) for c in {r.stripe_customer_id for r in late}}
        units: dict[tuple[str, str, datetime], Decimal] = defaultdict(Decimal)
        for r in late:
            at = int(r.slot_start.timestamp())
            sent = int(r.sent_at.timestamp()) if r.sent_at else at
            if any(s <= at < e and sent > f for s, e, f in invoices[r.stripe_customer_id]):
                units[(r.customer, r.meter, floor_hour(r.slot_start))] += r.value
        out = []
        for (customer, meter, hour), value in sorted(units.items()):
            billed = _billed_in(history, customer, meter, hour)
            out.append(Discrepancy(
                "after_invoice_finalized", customer, meter, hour, hour + HOUR, value, value,
                value, value, billed.unit_amount_decimal if billed else None,
                billed.currency if billed else None,
                "Stripe received this usage after the period's invoice was finalized: it is "
                "not on the invoice; bill it by hand (invoice item) or write it off",
            ))  # fmt: skip
        return out

    def _finalized(self, stripe_customer: str) -> list[tuple[int, int, int]]:
        """The customer's finalized invoices; none when Stripe cannot answer now, so one
        listing failing never fails the run (this run then misses that customer's
        `after_invoice_finalized` alerts; the warning says so)."""
        try:
            return self._summaries.finalized(stripe_customer)
        except TransientStripeError as exc:
            log.warning("invoices of %s not read: %s", stripe_customer, exc)
            return []

    def _add_ours(
        self,
        history: ContextHistory,
        window: tuple[datetime, datetime],
        figures: dict[PairKey, dict[datetime, HourFigures]],
    ) -> None:
        usage = self._records.usage(history.scope(), window)
        for u in sorted(usage, key=lambda u: u.start):
            meter = history.meter(u.customer, u.meter, u.start)
            if meter is None:
                continue
            f = _hour(figures, (u.customer, u.meter), floor_hour(u.start))
            value = u.value(meter.aggregation)
            f.ours = f.ours + value if meter.formula == "sum" else value

    def _add_sent(
        self,
        history: ContextHistory,
        window: tuple[datetime, datetime],
        figures: dict[PairKey, dict[datetime, HourFigures]],
    ) -> list[LedgerRow]:
        rows = self._ledger.tenant_window(history.tenant_id, window[0], window[1])
        retrying_since = self._clock.now() - STRIPE_DEDUPE_HORIZON
        for row in rows:
            hour = floor_hour(row.slot_start)
            own = history.meter(row.customer, row.meter, row.slot_start)
            meter = own if own is not None else _billed_in(history, row.customer, row.meter, hour)
            if meter is None or row.status == "canceled":
                continue
            f = _hour(figures, (row.customer, row.meter), hour)
            if own is None:
                _add_stray(f, row, meter.formula)
            else:
                _add_row(f, row, meter.formula, retrying_since)
        return rows

    def _stripe(
        self, stripe_customer: str, meter_id: str, window: tuple[datetime, datetime]
    ) -> dict[datetime, Decimal]:
        start, end = int(window[0].timestamp()), int(window[1].timestamp())
        values = self._summaries.hourly(meter_id, stripe_customer, start, end)
        return {datetime.fromtimestamp(h, UTC): v for h, v in values.items()}


def _after_period_end(row: LedgerRow, bounds: Sequence[datetime]) -> bool:
    ends = [b for b in bounds if b > row.slot_start]
    return (
        row.status == "sent" and row.sent_at is not None and bool(ends)
        and row.sent_at > min(ends)
    )  # fmt: skip


def _billed_pairs(
    history: ContextHistory, window: tuple[datetime, datetime]
) -> set[tuple[str, str, str, str]]:
    """(customer, meter, Stripe customer, Stripe meter) of every context in force during
    `window` that bills the meter: one summaries call each."""
    out = set()
    for customer, contexts in history.contexts.items():
        for n, c in enumerate(contexts):
            until = contexts[n + 1].since if n + 1 < len(contexts) else window[1]
            if c.since < window[1] and until > window[0]:
                out |= {(customer, k, c.stripe_customer_id, m.stripe_meter_id)
                        for k, m in c.meters.items()}  # fmt: skip
    return out


def _billed_in(
    history: ContextHistory, customer: str, meter: str, hour: datetime
) -> BilledMeter | None:
    """The meter as billed during `hour`: by the context at its start, else by one that
    begins within it."""
    found = history.meter(customer, meter, hour)
    if found is not None:
        return found
    for c in history.contexts.get(customer, ()):
        if hour < c.since < hour + HOUR and meter in c.meters:
            return c.meters[meter]
    return None


def _add_stray(f: HourFigures, row: LedgerRow, formula: str) -> None:
    """A row of a slot no context bills (its own slot's context, like ours): compared with
    Stripe only. Rejected rows are not in Stripe."""
    if row.status == "rejected":
        return
    f.sent_values.append(row.value)
    f.stray = (f.stray or 0) + row.value if formula == "sum" else row.value


def _add_row(f: HourFigures, row: LedgerRow, formula: str, retrying_since: datetime) -> None:
    if row.status == "rejected":
        f.unsent = f.unsent + row.value if formula == "sum" else row.value
        return
    if formula != "sum":
        f.stray = None  # this later row is the hour's newest in Stripe
    f.sent_values.append(row.value)
    created = row.created_at
    if row.status == "pending" and created is not None and created >= retrying_since:
        f.in_flight = (f.in_flight or 0) + row.value if formula == "sum" else row.value
        return
    f.sent = f.sent + row.value if formula == "sum" else row.value


def _hour(
    figures: dict[PairKey, dict[datetime, HourFigures]], key: PairKey, hour: datetime
) -> HourFigures:
    return figures[key].setdefault(hour, HourFigures())


def _discrepancies(
    customer: str, meter: BilledMeter, hour: datetime, f: HourFigures
) -> list[Discrepancy]:
    return [
        Discrepancy(
            kind,
            customer,
            meter.key,
            hour,
            hour + HOUR,
            f.ours,
            f.sent,
            stripe,
            difference,
            meter.unit_amount_decimal,
            meter.currency,
        )
        for kind, difference, stripe in classify(f, meter.formula)
    ]
