"""Recording billing boundaries and context changes without ever re-splitting a pushed hour.

A boundary (a period start or end, or a context change from `contexts.py`) splits its hour
into two slots. One learned late — a webhook Stripe delivered hours after the change, an
anchor reset, a resume — may fall inside a slot already pushed as a whole. Sending the new
sub-slot while the whole slot's event stays in Stripe would bill the usage after the boundary
twice, so `BoundaryKeeper` first nets the pushed slot out:

- every live row of the slot is `sent` and was received within Stripe's cancel window (23 h
  of our 24 h margin): each is canceled at Stripe and marked `canceled`, then the boundary is
  recorded where it is and the next push sends both parts from scratch;
- otherwise (a row pending, older than the window, or a cancel refused midway) the boundary
  is recorded at the slot's end instead, so the pushed slot stays whole on the side Stripe
  billed it, and `split_after_push` alerts per meter say what each side bills too much or
  too little, with its money (`money.py`). Cancels Stripe confirmed before a refusal are
  recorded; the push re-sends them as a correction of the whole slot, so the ledger never
  disagrees with Stripe.

What the alert of the side before counts follows the meter's aggregation (`_alert`). Sum and
count: the usage after the true boundary, billed on the side before it. Max: that side bills
the maximum of its period up to the slot's end, where it should bill the maximum up to the
boundary; latest: the slot's last value, where it should bill the last value before the
boundary. The alert's units are those two (ours: what it should bill; sent and Stripe's: what
it bills), and its money the difference of their invoice lines; none is raised when they are
equal.

A context change to another plan has a side after it too (`_after`): the new context's
period starts at the slot's end, so the usage between the true boundary and there is billed
by no one at the new price. A second alert per meter the new context bills says so,
attributed to it (its window starts and ends at the slot's end, where the new context is
recorded, so `money.py` prices it at the new context's frozen price and it does not share
the key of the side before's alert): for sum and count the units it
lacks (ours: those units; sent 0; difference minus them); for max and latest the value its
period should bill (the maximum or last value from the true boundary to the period's end)
against the value it holds (from the slot's end). None after a cancellation (its context
bills nothing), and none when the figures are equal. Known limits: a period boundary learned
too late (an anchor reset) leaves the next period of the same context lacking the same
usage, and only the side before it is alerted; the new period ends, for these figures, at
the next boundary already recorded (one learned in the same sync is not yet).

A context change also changes who bills the later slots of its hour (after a period end in
the same hour, say), which may have been pushed under the old context before the change was
learned: each is netted out by the same rule, so the push sends it again under its own
context (or, after a cancellation, not at all). One that cannot be netted out is left in
Stripe whole: its event is stamped after the change, so Stripe bills it by the terms in
force then — the new plan's price, or nothing after a cancellation, as the contract wants;
reconciliation, which attributes each ledger row to its own slot's context, counts it as
Stripe's and not as ours to account for (`reconcile.py`, `stray`). A period boundary learned
late leaves later slots to their context and nets out only the slot it splits.

These cancels are Stripe calls per row, but only for the rare boundary learned late, never on
the push's hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from meterline.catalog.model import Aggregation
from meterline.clock import Clock
from meterline.stripe.meter_events import (
    STRIPE_DEDUPE_HORIZON,
    MeterEventSender,
    PermanentStripeError,
    TransientStripeError,
)
from reporter.alerts import Discrepancy, ReconciliationStore
from reporter.contexts import EPOCH, Context, ContextHistory, ContextStore
from reporter.ledger import LedgerRow, ReportLedger
from reporter.rollups import period_start
from reporter.scope import BilledMeter
from reporter.slots import HOUR, MINUTE, ceil_minute, floor_hour, slot_end, slot_start

log = logging.getLogger("reporter.boundaries")
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


class UsageFigures(Protocol):
    """Our counted usage over a span, for `split_after_push` (`reporter/postgres/rollups.py`)."""

    def summed(
        self, tenant_id: int, customer: str, meter: str, start: datetime, end: datetime
    ) -> Decimal:
        """The sum of the meter's minute values in [start, end) (0 without usage)."""

    def last_values(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        span: tuple[datetime, datetime, datetime],
    ) -> tuple[Decimal, Decimal]:
        """For a max or latest meter and `span` = (period start, boundary, slot end): the
        value its period bills up to the boundary and up to the slot's end (0 without usage),
        each folded as `rollups.py` folds slots; one query."""


class BoundaryKeeper:
    def __init__(
        self,
        contexts: ContextStore,
        ledger: ReportLedger,
        usage: UsageFigures,
        sender: MeterEventSender,
        clock: Clock,
        store: ReconciliationStore,
    ) -> None:
        self._contexts = contexts
        self._ledger = ledger
        self._usage = usage
        self._sender = sender
        self._clock = clock
        self._store = store

    def sync(self, tenant_id: int, customers: Sequence[str] | None = None) -> ContextHistory:
        """Record the tenant's new contexts and boundaries (see the module); the history after.

        Reads the ledger once for every hour a new boundary could split, then only the hours
        that hold pushed rows; writes everything in one transaction. `customers`: only theirs
        (the history returned is then theirs only). Raises only for Postgres failures; a
        refused cancel becomes a moved boundary.
        """
        current = self._contexts.current(tenant_id, customers)
        history = self._contexts.history(tenant_id, customers)
        bounds = self._contexts.boundaries(tenant_id, customers)
        now_minute = ceil_minute(self._clock.now())
        contexts: list[Context] = []
        wanted: list[tuple[Context, datetime, bool]] = []
        for state in current:
            customer = state.context.customer
            latest = history.latest(customer)
            if latest is None:
                contexts.append(replace(state.context, since=EPOCH))
            elif not latest.same_terms(state.context):
                at = min(max(state.changed_at, latest.since + MINUTE), now_minute)
                wanted.append((state.context, at, True))
            periods = {ceil_minute(b) for b in state.period if b is not None}
            wanted += [(state.context, at, False) for at in periods - set(bounds.get(customer, ()))]
        splits = [(c.customer, at) for c, at, _ in wanted if floor_hour(at) < at <= now_minute]
        pushed = self._ledger.live_hours(tenant_id, splits)
        alerts: list[Discrepancy] = []
        added: list[tuple[str, datetime]] = []
        for context, at, is_context in sorted(wanted, key=lambda w: (w[0].customer, w[1])):
            mine = bounds.setdefault(context.customer, [])
            placed = at
            if (context.customer, floor_hour(at)) in pushed and (is_context or at not in mine):
                new = context if is_context else None
                placed = self._place(history, context.customer, at, mine, alerts, new)
            if placed not in mine:
                mine.append(placed)
                added.append((context.customer, placed))
            if is_context:
                contexts.append(replace(context, since=placed))
        self._contexts.record(tenant_id, added, contexts)
        if alerts:
            self._store.record(tenant_id, None, alerts)
        for context in contexts:
            history.add(context)
        return history

    def _place(
        self,
        history: ContextHistory,
        customer: str,
        at: datetime,
        bounds: list[datetime],
        alerts: list[Discrepancy],
        new: Context | None,
    ) -> datetime:
        """Where boundary `at` goes once the pushed slots of its hour it changes are netted
        out (see the module): `at`, or the end of the slot it splits when that slot cannot be
        netted out (with alerts). For a context change (to `new`) every later slot of the hour
        is netted out too; one that cannot be is left to Stripe, which bills it by its
        timestamp."""
        hour = floor_hour(at)
        live = [
            r
            for r in self._ledger.customer_window(history.tenant_id, customer, hour, hour + HOUR)
            if r.status in ("sent", "pending")
        ]
        start = slot_start(at, bounds)
        split = [r for r in live if r.slot_start == start]
        placed = at
        if start < at and split and not self._cancel(split):
            placed = slot_end(start, bounds)
            alerts.extend(self._moved(history, customer, split, (at, placed), bounds, new))
        if new is not None:
            for later in sorted({r.slot_start for r in live if r.slot_start >= placed}):
                if not self._cancel([r for r in live if r.slot_start == later]):
                    log.info("slot %s of %s kept in Stripe after a change learned late",
                             later.isoformat(), customer)  # fmt: skip
        return placed

    def _cancel(self, rows: list[LedgerRow]) -> bool:
        horizon = self._clock.now() - STRIPE_DEDUPE_HORIZON
        if any(r.status != "sent" or r.sent_at is None or r.sent_at < horizon for r in rows):
            return False
        done: list[str] = []
        try:
            for row in rows:
                self._sender.cancel(row.event_name, row.identifier)
                done.append(row.identifier)
        except (PermanentStripeError, TransientStripeError) as exc:
            log.warning("cancel of %s refused after %d cancel(s): %s", row.identifier,
                        len(done), exc)  # fmt: skip
            return False
        finally:
            self._ledger.mark_canceled(done)
        return True

    def _moved(
        self,
        history: ContextHistory,
        customer: str,
        rows: list[LedgerRow],
        cut: tuple[datetime, datetime],
        bounds: list[datetime],
        new: Context | None,
    ) -> list[Discrepancy]:
        """The `split_after_push` alerts of the slot of `rows`, kept whole to `cut[1]` although
        a boundary at `cut[0]` splits it: per meter, one if its side before the boundary bills
        what it should not, and one if the side after it (`new`, the context the boundary
        changes to; none for a period boundary) lacks what it should bill (see the module)."""
        start = rows[0].slot_start
        context = history.at(customer, start)
        span = (period_start(start, bounds), *cut)
        until = min((b for b in bounds if b > cut[1]), default=FOREVER)
        found = []
        for meter in sorted({r.meter for r in rows}):
            found.append(self._alert(history.tenant_id, customer, meter, context, span))
            if new is not None and meter in new.meters:
                found.append(self._after(history.tenant_id, customer, meter, new, (*cut, until)))
        return [d for d in found if d.difference != 0]

    def _alert(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        context: Context | None,
        span: tuple[datetime, datetime, datetime],
    ) -> Discrepancy:
        """One meter's `split_after_push` by its aggregation, `span` being (period start,
        boundary, slot end); its difference is 0 when the side before bills what it should."""
        _, at, end = span
        billed = None if context is None else context.meters.get(meter)
        figures: tuple[Decimal, Decimal, Decimal | None, Decimal]
        if billed is not None and billed.formula == "last":
            due, held = self._usage.last_values(
                tenant_id, customer, meter, billed.aggregation, span
            )
            figures = (due, held, held, held - due)
            billing = f"the side before it bills {held} where it should bill {due}"
        else:
            units = self._usage.summed(tenant_id, customer, meter, at, end)
            figures = (units, Decimal(0), None, units)
            billing = "this usage is billed on the side before it"
        return _split(customer, meter, billed, (at, end), figures, f"{_late(at)}: {billing}")

    def _after(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        new: Context,
        span: tuple[datetime, datetime, datetime],
    ) -> Discrepancy:
        """One meter's `split_after_push` on the side after the boundary, `span` being
        (boundary, slot end, the end of the period `new` starts there): that period lacks the
        usage between the two, so it bills what it holds where it should bill its units (sum,
        count) or its maximum or last value from the boundary on (max, latest). Attributed to
        `new` (its window starts at the slot's end, where `new` is recorded), priced at its
        price; its difference is 0 when that side bills what it should."""
        at, end, until = span
        billed = new.meters[meter]
        figures: tuple[Decimal, Decimal, Decimal | None, Decimal]
        if billed.formula == "last":
            last = self._usage.last_values
            due = last(tenant_id, customer, meter, billed.aggregation, (at, at, until))[1]
            held = last(tenant_id, customer, meter, billed.aggregation, (end, end, until))[1]
            figures = (due, held, held, held - due)
            billing = f"the side after it bills {held} where it should bill {due}"
        else:
            units = self._usage.summed(tenant_id, customer, meter, at, end)
            figures = (units, Decimal(0), None, -units)
            billing = f"the side after it, from {end.isoformat()}, lacks the usage before then"
        return _split(customer, meter, billed, (end, end), figures, f"{_late(at)}: {billing}")


def _late(at: datetime) -> str:
    return (
        f"a billing boundary at {at.isoformat()} was learned after its hour was pushed "
        "and can no longer be canceled"
    )


def _split(
    customer: str,
    meter: str,
    billed: BilledMeter | None,
    window: tuple[datetime, datetime],
    figures: tuple[Decimal, Decimal, Decimal | None, Decimal],
    detail: str,
) -> Discrepancy:
    """A `split_after_push` of `figures` (ours, sent, Stripe's, difference), priced by
    `money.py` at the context that bills the window's start."""
    ours, sent, stripe, difference = figures
    return Discrepancy(
        "split_after_push", customer, meter, *window, ours, sent, stripe, difference,
        billed.unit_amount_decimal if billed else None, billed.currency if billed else None,
        detail,
    )  # fmt: skip
