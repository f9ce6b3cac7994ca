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
  billed it, and a `split_after_push` alert carries the usage after the true boundary and its
  money. Cancels Stripe confirmed before a refusal are recorded; the push re-sends them as a
  correction of the whole slot, so the ledger never disagrees with Stripe.

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

Known limit: a `split_after_push` alert counts the units after the boundary as a sum, also
for max and latest meters, where the money it shows is only an upper bound.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from meterline.clock import Clock
from meterline.stripe.meter_events import (
    STRIPE_DEDUPE_HORIZON,
    MeterEventSender,
    PermanentStripeError,
    TransientStripeError,
)
from reporter.alerts import Discrepancy, ReconciliationStore
from reporter.contexts import EPOCH, Context, ContextHistory, insert, load_current, load_history
from reporter.ledger import LedgerRow, ReportLedger
from reporter.slots import HOUR, MINUTE, ceil_minute, floor_hour, slot_end, slot_start

log = logging.getLogger("reporter.boundaries")


class BoundaryKeeper:
    def __init__(
        self,
        pool: ConnectionPool,
        sender: MeterEventSender,
        clock: Clock,
        store: ReconciliationStore,
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._clock = clock
        self._store = store
        self._ledger = ReportLedger(pool)

    def sync(self, tenant_id: int, customers: Sequence[str] | None = None) -> ContextHistory:
        """Record the tenant's new contexts and boundaries (see the module); the history after.

        Reads the ledger once for every hour a new boundary could split, then only the hours
        that hold pushed rows; writes everything in one transaction. `customers`: only theirs
        (the history returned is then theirs only). Raises only for Postgres failures; a
        refused cancel becomes a moved boundary.
        """
        current = load_current(self._pool, tenant_id, customers)
        with self._pool.connection() as conn:
            history = load_history(conn, tenant_id, customers)
            bounds = _boundaries(conn, tenant_id, customers)
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
        pushed = self._pushed_hours(tenant_id, splits)
        alerts: list[Discrepancy] = []
        added: list[tuple[str, datetime]] = []
        for context, at, is_context in sorted(wanted, key=lambda w: (w[0].customer, w[1])):
            mine = bounds.setdefault(context.customer, [])
            placed = at
            if (context.customer, floor_hour(at)) in pushed and (is_context or at not in mine):
                placed = self._place(history, context.customer, at, mine, alerts, is_context)
            if placed not in mine:
                mine.append(placed)
                added.append((context.customer, placed))
            if is_context:
                contexts.append(replace(context, since=placed))
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO report_boundaries (tenant_id, customer, at) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [(tenant_id, customer, at) for customer, at in added],
            )
            insert(conn, tenant_id, contexts)
        if alerts:
            self._store.record(tenant_id, None, alerts)
        for context in contexts:
            history.add(context)
        return history

    def _pushed_hours(
        self, tenant_id: int, splits: list[tuple[str, datetime]]
    ) -> set[tuple[str, datetime]]:
        """The (customer, hour) of `splits` whose hour holds rows Stripe has or may have."""
        if not splits:
            return set()
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT l.customer, p.hour FROM report_ledger l "
                "JOIN unnest(%s::text[], %s::timestamptz[]) AS p(customer, hour) "
                "ON l.customer = p.customer AND l.slot_start >= p.hour "
                "AND l.slot_start < p.hour + interval '1 hour' "
                "WHERE l.tenant_id = %s AND l.status IN ('sent', 'pending')",
                ([c for c, _ in splits], [floor_hour(at) for _, at in splits], tenant_id),
            ).fetchall()
        return {(r[0], r[1]) for r in rows}

    def _place(
        self,
        history: ContextHistory,
        customer: str,
        at: datetime,
        bounds: list[datetime],
        alerts: list[Discrepancy],
        is_context: bool,
    ) -> datetime:
        """Where boundary `at` goes once the pushed slots of its hour it changes are netted
        out (see the module): `at`, or the end of the slot it splits when that slot cannot be
        netted out (with alerts). For a context change every later slot of the hour is netted
        out too; one that cannot be is left to Stripe, which bills it by its timestamp."""
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
            alerts.extend(self._moved(history, customer, split, at, placed))
        if is_context:
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
        at: datetime,
        end: datetime,
    ) -> list[Discrepancy]:
        out = []
        context = history.at(customer, rows[0].slot_start)
        for meter in sorted({r.meter for r in rows}):
            units = self._units(history.tenant_id, customer, meter, at, end)
            if units == 0:
                continue
            billed = None if context is None else context.meters.get(meter)
            out.append(Discrepancy(
                "split_after_push", customer, meter, at, end, units, Decimal(0), None, units,
                billed.unit_amount_decimal if billed else None,
                billed.currency if billed else None,
                f"a billing boundary at {at.isoformat()} was learned after its hour was pushed "
                "and can no longer be canceled: this usage is billed on the side before it",
            ))  # fmt: skip
        return out

    def _units(
        self, tenant_id: int, customer: str, meter: str, start: datetime, end: datetime
    ) -> Decimal:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(value), 0) FROM usage_rollups_minute WHERE tenant_id = %s "
                "AND customer = %s AND meter = %s AND bucket >= %s AND bucket < %s",
                (tenant_id, customer, meter, start, end),
            ).fetchone()
        return Decimal(row[0]) if row else Decimal(0)


def _boundaries(
    conn: psycopg.Connection[Any], tenant_id: int, customers: Sequence[str] | None
) -> dict[str, list[datetime]]:
    only = None if customers is None else list(customers)
    rows = conn.execute(
        "SELECT customer, at FROM report_boundaries WHERE tenant_id = %s "
        "AND (%s::text[] IS NULL OR customer = ANY(%s))",
        (tenant_id, only, only),
    ).fetchall()
    out: dict[str, list[datetime]] = {}
    for customer, at in rows:
        out.setdefault(customer, []).append(at)
    return out
