"""Repairs finance can ask for on an alert. Never automatic, each one recorded.

- `resend` (missing_in_stripe): resend our identifiers of the window. Safe because Stripe
  dedupes identifiers: an event it holds answers "already exists" and is not counted again.
  Offered when Stripe holds nothing of the window, or when exactly one of our events matches
  the gap and was sent less than 23 h ago (within Stripe's identifier dedupe window).
- `push` (not_reported): run a push for the tenant now; it sends the correction revision.
- `cancel` (value_mismatch raised because our count fell below what we reported): cancel the
  window's events (Stripe allows it within 24 h of receipt), mark them canceled in the ledger,
  and push again, which sends the current value as a new revision.
Anything else (usage Stripe holds that we never sent, usage too old for Stripe) has no safe
automatic repair: finance resolves it with a note (credit note, manual invoice item, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from meterline.clock import Clock
from meterline.errors import Conflict, FieldError, ValidationFailed
from meterline.stripe.meter_events import MeterEventSender, PermanentStripeError
from reporter.alerts import Alert, ReconciliationStore
from reporter.ledger import LedgerRow, ReportLedger
from reporter.push import PushReport
from reporter.slots import HOUR, floor_hour

ACTIONS = ("resend", "push", "cancel")
DEDUPE_HORIZON = timedelta(hours=23)


class Repairs:
    def __init__(
        self,
        ledger: ReportLedger,
        sender: MeterEventSender,
        store: ReconciliationStore,
        push: Callable[[int], PushReport],
        clock: Clock,
    ) -> None:
        self._ledger = ledger
        self._sender = sender
        self._store = store
        self._push = push
        self._clock = clock

    def offers(self, alert: Alert) -> list[str]:
        """The repairs that are safe for this alert now."""
        if alert.status == "resolved":
            return []
        if alert.kind == "missing_in_stripe" and self._resendable(alert):
            return ["resend"]
        if alert.kind == "not_reported":
            return ["push"]
        if (
            alert.kind == "value_mismatch"
            and alert.stripe_units is None
            and self._cancelable(alert)
        ):
            return ["cancel"]
        return []

    def apply(self, alert: Alert, action: str, actor: str) -> str:
        """Carry out one offered repair; raises Conflict when it is not safe for this alert."""
        if action not in ACTIONS:
            raise ValidationFailed([FieldError("action", f"must be one of {', '.join(ACTIONS)}")])
        if action not in self.offers(alert):
            raise Conflict(f"{action} is not a safe repair for alert {alert.id} ({alert.kind})")
        rows: list[LedgerRow] = []
        if action == "resend":
            rows = self._resendable(alert)
            outcome = self._resend(rows)
        elif action == "cancel":
            rows = self._cancelable(alert)
            outcome = self._cancel(alert.tenant_id, rows)
        else:
            outcome = _describe(self._push(alert.tenant_id))
        self._store.add_repair(alert.id, action, [r.identifier for r in rows], outcome, actor)
        return outcome

    def _window_rows(self, alert: Alert) -> list[LedgerRow]:
        start = floor_hour(alert.window_start)
        rows = self._ledger.window(
            alert.tenant_id, alert.customer, alert.meter, start, start + HOUR
        )
        return [r for r in rows if r.status in ("sent", "pending")]

    def _resendable(self, alert: Alert) -> list[LedgerRow]:
        rows = self._window_rows(alert)
        if alert.stripe_units == 0:
            return rows
        recent = self._clock.now() - DEDUPE_HORIZON
        matches = [r for r in rows if r.value == -alert.difference]
        if len(matches) == 1 and matches[0].sent_at and matches[0].sent_at > recent:
            return matches
        return []

    def _cancelable(self, alert: Alert) -> list[LedgerRow]:
        rows = self._window_rows(alert)
        recent = self._clock.now() - DEDUPE_HORIZON
        if rows and all(r.sent_at and r.sent_at > recent for r in rows):
            return rows
        return []

    def _resend(self, rows: list[LedgerRow]) -> str:
        # A fresh Idempotency-Key (the attempt number is part of it): replaying the original
        # request's key would only replay Stripe's first answer, not deliver the event again.
        results = self._sender.send([r.event() for r in rows], attempt=self._clock.now_ms())
        delivered = sum(1 for r in results if r.delivery.value == "delivered")
        held = sum(1 for r in results if r.delivery.value == "duplicate")
        return f"resent {len(rows)} event(s): {delivered} delivered, {held} already held by Stripe"

    def _cancel(self, tenant_id: int, rows: list[LedgerRow]) -> str:
        for row in rows:
            try:
                self._sender.cancel(row.event_name, row.identifier)
            except PermanentStripeError as exc:
                raise Conflict(f"Stripe refused to cancel {row.identifier}: {exc}") from None
        self._ledger.mark_canceled([r.identifier for r in rows])
        return f"canceled {len(rows)} event(s); " + _describe(self._push(tenant_id))


def _describe(report: PushReport) -> str:
    if report.skipped:
        return "push skipped: another push is running; it will pick the correction up"
    return f"push sent {report.delivered} event(s), {report.left_pending} left pending"
