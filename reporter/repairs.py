"""Repairs finance can ask for on an alert. Never automatic, each one recorded, safe to click
at any time: each re-reads Stripe's summary of the window immediately before acting and sends
only what Stripe does not hold. The summary is read for every Stripe customer and meter the
window's rows went to (a change within the hour can move a customer to another Stripe
customer), and each group of rows is judged against its own figure.

- `resend` (missing_in_stripe): our events of the window that Stripe lacks, with their own
  identifiers and a fresh Idempotency-Key. An event Stripe received within `STRIPE_DEDUPE_HORIZON`
  (23 h, inside Stripe's 24 h identifier dedupe) is resent whenever the window is short:
  Stripe answers "already exists" if it holds it, however late its summary is. An older
  event is resent only when the fresh summary proves Stripe lacks it: Stripe holds nothing of
  the window, or (no recent events) it lacks exactly that event's value. Anything else is a
  409 saying why; nothing is sent. For last-value meters only the newest revision matters.
- `push` (not_reported): run a push for the tenant now; it sends the correction revision.
- `cancel` (value_mismatch raised because our count fell below what we reported): cancel the
  window's events, mark them canceled, and push again, which sends the current value as a
  new revision. Every precondition is checked before the first cancel — all rows confirmed
  and received within 23 h, and Stripe's fresh summary equal to what we sent — so a refusal
  changes nothing in Stripe or in our records.
Our records of a repair (ledger statuses and the repairs log) are written in one transaction
after Stripe answered. A cancel cannot be undone at Stripe, so if Stripe fails in the middle of
a multi-row cancel anyway, the cancels it confirmed are recorded (with the failure) and the
push re-bills the difference; the ledger never disagrees with Stripe.
Anything else (usage Stripe holds that we never sent, usage too old for Stripe) has no safe
automatic repair: finance resolves it with a note (credit note, manual invoice item, ...).

A resend marks the rows received now, which restarts their dedupe window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from meterline.clock import Clock
from meterline.errors import Conflict, FieldError, Unavailable, ValidationFailed
from meterline.stripe.meter_events import (
    STRIPE_DEDUPE_HORIZON,
    Delivery,
    MeterEventSender,
    PermanentStripeError,
    TransientStripeError,
    same_under_quantum,
)
from meterline.stripe.summaries import SummaryReader
from reporter.alerts import Alert
from reporter.contexts import ContextHistory
from reporter.ledger import LedgerRow
from reporter.push import PushReport
from reporter.slots import HOUR, floor_hour

ACTIONS = ("resend", "push", "cancel")


@dataclass
class Held:
    """What Stripe holds of the alert's hour for one Stripe customer and meter (`units`, read
    just now), and our rows that went there."""

    units: Decimal
    last: bool
    rows: list[LedgerRow] = field(default_factory=list)


class RepairRecords(Protocol):
    """What repairs read and write in Postgres (`reporter/postgres/repairs.py`)."""

    def window(
        self, tenant_id: int, customer: str, meter: str, start: datetime, end: datetime
    ) -> list[LedgerRow]:
        """The report ledger's rows of the customer's meter in [start, end)."""

    def history(self, tenant_id: int, customer: str) -> ContextHistory:
        """The customer's billing contexts over time."""

    def record(self, alert_id: int, repair: Repair, at: datetime) -> None:
        """The ledger's new statuses (`repair.canceled` canceled, `repair.received` received
        at `at`) and the repairs log entry, in one transaction."""


@dataclass(frozen=True)
class Repair:
    """One repair's log entry and the ledger rows it canceled or had Stripe receive."""

    action: str
    identifiers: Sequence[str]
    outcome: str
    actor: str
    canceled: Sequence[str] = ()
    received: Sequence[str] = ()


class Repairs:
    def __init__(
        self,
        records: RepairRecords,
        sender: MeterEventSender,
        summaries: SummaryReader,
        push: Callable[[int], PushReport],
        clock: Clock,
    ) -> None:
        self._records = records
        self._sender = sender
        self._summaries = summaries
        self._push = push
        self._clock = clock

    def offers(self, alert: Alert) -> list[str]:
        """The repairs that may apply to this alert; `apply` re-checks them against Stripe."""
        if alert.status == "resolved":
            return []
        if alert.kind == "missing_in_stripe" and self._window_rows(alert):
            return ["resend"]
        if alert.kind == "not_reported":
            return ["push"]
        if alert.kind == "value_mismatch" and alert.stripe_units is None:
            rows = self._window_rows(alert)
            if rows and all(self._recent(r) and r.status == "sent" for r in rows):
                return ["cancel"]
        return []

    def apply(self, alert: Alert, action: str, actor: str) -> str:
        """Carry out one repair. Raises Conflict when it is not safe for this alert now
        (nothing is sent then), Unavailable when Stripe cannot be read or reached now."""
        if action not in ACTIONS:
            raise ValidationFailed([FieldError("action", f"must be one of {', '.join(ACTIONS)}")])
        if action not in self.offers(alert):
            raise Conflict(f"{action} is not a safe repair for alert {alert.id} ({alert.kind})")
        if action == "push":
            outcome = _describe(self._push(alert.tenant_id))
            self._record(alert, action, [], outcome, actor)
            return outcome
        rows = self._window_rows(alert)
        if not rows:
            raise Conflict(f"alert {alert.id} has no sent events left to {action}")
        held = self._stripe_now(alert, rows)
        if action == "resend":
            return self._resend(alert, held, actor)
        return self._cancel(alert, held, actor)

    def _window_rows(self, alert: Alert) -> list[LedgerRow]:
        start = floor_hour(alert.window_start)
        rows = self._records.window(
            alert.tenant_id, alert.customer, alert.meter, start, start + HOUR
        )
        return [r for r in rows if r.status in ("sent", "pending")]

    def _stripe_now(self, alert: Alert, rows: list[LedgerRow]) -> list[Held]:
        """Stripe's figures for the alert's hour, read now: one per Stripe customer and meter
        the window's rows went to (a context change within the hour may have moved the
        customer to another Stripe customer or meter), each with its rows."""
        start = floor_hour(alert.window_start)
        history = self._records.history(alert.tenant_id, alert.customer)
        groups: dict[tuple[str, str], Held] = {}
        for row in rows:
            meter = history.meter(alert.customer, alert.meter, row.slot_start)
            if meter is None:
                raise Conflict(f"{alert.customer} was not billed for {alert.meter} then")
            key = (row.stripe_customer_id, meter.stripe_meter_id)
            if key not in groups:
                groups[key] = Held(self._summary(key, start), meter.formula == "last")
            groups[key].rows.append(row)
        return list(groups.values())

    def _summary(self, key: tuple[str, str], hour: datetime) -> Decimal:
        """What Stripe holds of `hour` for one (Stripe customer, Stripe meter), read now."""
        stripe_customer, meter_id = key
        start = int(hour.timestamp())
        try:
            hours = self._summaries.hourly(meter_id, stripe_customer, start, start + 3600)
        except (TransientStripeError, PermanentStripeError) as exc:
            raise Unavailable(f"Stripe's summary could not be read: {exc}", 60) from None
        return hours.get(start, Decimal(0))

    def _recent(self, row: LedgerRow) -> bool:
        received = row.sent_at or row.created_at
        return received is not None and received > self._clock.now() - STRIPE_DEDUPE_HORIZON

    def _resend(self, alert: Alert, held: list[Held], actor: str) -> str:
        chosen = [row for h in held for row in self._missing(h.rows, h.units, h.last)]
        if not chosen:
            units = sum((h.units for h in held), Decimal(0))
            outcome = f"Stripe already holds the window ({units} units): nothing sent"
            self._record(alert, "resend", [], outcome, actor)
            return outcome
        failure = None
        try:
            results = self._sender.send([r.event() for r in chosen], self._clock.now_ms())
        except TransientStripeError as exc:
            results, failure = exc.done, exc
        landed = [r.identifier for r in results if r.landed]
        delivered = sum(1 for r in results if r.delivery is Delivery.DELIVERED)
        outcome = (
            f"resent {len(results)} of {len(chosen)} event(s): {delivered} delivered, "
            f"{len(landed) - delivered} already held by Stripe"
        )
        self._record(alert, "resend", landed, outcome, actor, received=landed)
        if failure is not None:
            raise Unavailable(f"{outcome}; Stripe failed for the rest: {failure}", 60)
        return outcome

    def _missing(self, rows: list[LedgerRow], held: Decimal, last: bool) -> list[LedgerRow]:
        """The rows to resend given Stripe's fresh figure `held`; Conflict when unsafe."""
        if last:
            newest = rows[-1]
            return [] if same_under_quantum(held, newest.value) else [newest]
        expected = sum((r.value for r in rows), Decimal(0))
        if same_under_quantum(held, expected):
            return []
        if held > expected:
            raise Conflict(f"Stripe holds {held} units, more than the {expected} we sent")
        recent = [r for r in rows if self._recent(r)]
        old = [r for r in rows if not self._recent(r)]
        if not old or held == 0:
            return rows
        lacking = [r for r in old if same_under_quantum(r.value, expected - held)]
        if not recent and len(lacking) == 1:
            return lacking
        raise Conflict(
            f"Stripe holds {held} of {expected} units and {len(old)} event(s) are past its "
            "24 h identifier dedupe: which of them it lacks cannot be told; nothing sent"
        )

    def _cancel(self, alert: Alert, held: list[Held], actor: str) -> str:
        for h in held:
            sent = sum((r.value for r in h.rows), Decimal(0))
            if not same_under_quantum(h.units, sent):
                raise Conflict(
                    f"Stripe holds {h.units} units of the window, not the {sent} we sent (lost, "
                    "or not processed yet): a cancel would be partial; nothing canceled"
                )
        rows = [row for h in held for row in h.rows]
        done: list[str] = []
        for row in rows:
            try:
                self._sender.cancel(row.event_name, row.identifier)
            except (PermanentStripeError, TransientStripeError) as exc:
                failed = f"failed at {row.identifier}: {exc}"
                self._record(alert, "cancel", done, failed, actor, canceled=done)
                self._push(alert.tenant_id)
                raise Conflict(
                    f"Stripe refused to cancel {row.identifier} after {len(done)} cancel(s): "
                    f"{exc}; those were recorded and the difference re-pushed"
                ) from None
            done.append(row.identifier)
        self._record(alert, "cancel", done, f"canceled {len(done)} event(s)", actor, canceled=done)
        return f"canceled {len(done)} event(s); " + _describe(self._push(alert.tenant_id))

    def _record(
        self,
        alert: Alert,
        action: str,
        identifiers: Sequence[str],
        outcome: str,
        actor: str,
        canceled: Sequence[str] = (),
        received: Sequence[str] = (),
    ) -> None:
        """The ledger's new statuses and the repairs log entry, in one transaction."""
        repair = Repair(action, identifiers, outcome, actor, canceled, received)
        self._records.record(alert.id, repair, self._clock.now())


def _describe(report: PushReport) -> str:
    if report.skipped:
        return "push skipped: another push is running; it will pick the correction up"
    return f"push sent {report.delivered} event(s), {report.left_pending} left pending"
