"""Reconciliation runs and alerts, and the status finance moves them through (kept in Postgres
by `reporter/postgres/alerts.py`).

An alert is one discrepancy for one customer, meter and window (an hour): its kind, our units
(rollups), the units we sent, Stripe's units, the difference (Stripe minus what it should
hold) and the money: what the period's invoice is off by at the frozen price (`money.py`).
A discrepancy found again by a later run updates the live (open or acknowledged) alert of the
same kind, customer, meter and window instead of adding a second one; one that finance
resolved is not raised again while its difference is unchanged. Status moves open ->
acknowledged -> resolved (or open -> resolved), each time with an optional note; a resolved
alert cannot change again. Opening an alert and resolving one (by finance or by a run) is
announced to webhooks (`reconciliation.alert_raised`, `reconciliation.alert_resolved`) in
the transaction of the change.

The kinds (`KINDS`), when each is raised, and its difference:

- `missing_in_stripe`: Stripe holds none of the hour, or lacks exactly one of our events;
  difference Stripe - sent.
- `extra_in_stripe`: Stripe holds usage we never sent, or exactly one event twice; Stripe - sent.
- `value_mismatch`: any other Stripe != sent; Stripe - sent.
- `not_reported`: ours != what the ledger accounted for; sent - ours.
- `too_late_for_stripe`, `rejected_by_stripe`: raised by pushes.
- `split_after_push`: a boundary learned after its hour was pushed, too late to cancel; the
  units after it (sum, count), or for max and latest meters the value the side before it
  bills less the value it should bill. After a plan change, a second one from the slot's end
  for the new plan's side: minus those units, or the value it bills less the value it should
  (`boundaries.py`).
- `after_invoice_finalized`: Stripe received the hour's usage after its period's invoice was
  finalized; the units received late.
- `flush_blocked`: the period-end flush ran before the aggregator was past the boundary
  (meter `*`); 0.

The first four are reconciliation's own (`reconcile.classify`): a live one of them that a
later run over its window no longer observes is resolved automatically with a note (`clear`).
New alerts are posted to `METERLINE_REPORTER_NOTIFY_WEBHOOK_URL` (Slack-compatible
`{"text": ...}`, `notify.py`). Every CSV (the API's and `/finance/alerts.csv`) is written by
`to_csv` through `meterline.csv_export`: a text cell starting with `=`, `+`, `-`, `@`, tab or
CR gets a leading `'`, text is quoted, numbers bare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from meterline import csv_export
from meterline.errors import FieldError, ValidationFailed
from meterline.inputs import FREE_TEXT, MESSAGES, is_free_text
from meterline.notify.events import Notification

KINDS = (
    "missing_in_stripe",
    "extra_in_stripe",
    "value_mismatch",
    "not_reported",
    "too_late_for_stripe",
    "rejected_by_stripe",
    "split_after_push",
    "after_invoice_finalized",
    "flush_blocked",
)
STATUSES = ("open", "acknowledged", "resolved")


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: str
    customer: str
    meter: str
    window_start: datetime
    window_end: datetime
    our_units: Decimal
    sent_units: Decimal
    stripe_units: Decimal | None
    difference: Decimal
    unit_amount_decimal: Decimal | None = None
    currency: str | None = None
    detail: str | None = None
    money: Decimal | None = None  # set by `reporter.money.priced` from the frozen price

    @property
    def money_minor(self) -> Decimal | None:
        """The money at stake: priced on the period's invoice when known (`money`), else at
        the marginal unit price."""
        if self.money is not None:
            return self.money
        if self.unit_amount_decimal is None:
            return None
        return abs(self.difference) * self.unit_amount_decimal


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    tenant_id: int
    run_id: int | None
    kind: str
    customer: str
    meter: str
    window_start: datetime
    window_end: datetime
    our_units: Decimal
    sent_units: Decimal
    stripe_units: Decimal | None
    difference: Decimal
    unit_amount_decimal: Decimal | None
    currency: str | None
    money_minor: Decimal | None
    status: str
    note: str | None
    detail: str | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Decimal):
                value = float(value)
            elif isinstance(value, datetime):
                value = value.isoformat().replace("+00:00", "Z")
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    tenant_id: int
    window_start: datetime
    window_end: datetime
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    hours_checked: int
    our_units: Decimal
    stripe_units: Decimal
    alerts: int
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return Alert.as_dict(self)  # type: ignore[arg-type]


class ReconciliationStore(Protocol):
    """Where runs, alerts and the repairs log are kept (`reporter/postgres/alerts.py`).

    `record` and `clear` announce the alerts they open or resolve (`raised`, `resolved`) in
    the transaction of the change; `transition` raises Conflict for a resolved alert and
    ValidationFailed for a bad status or note; `alert` raises NotFound.
    """

    def start_run(self, tenant_id: int, window: tuple[datetime, datetime], trigger: str) -> int: ...

    def finish_run(
        self, run_id: int, hours: int, ours: Decimal, stripe: Decimal, alerts: int,
        error: str | None = None,
    ) -> None: ...  # fmt: skip

    def runs(self, tenant_id: int, limit: int = 50) -> list[Run]: ...

    def record(
        self, tenant_id: int, run_id: int | None, found: Sequence[Discrepancy]
    ) -> tuple[list[int], set[int]]:
        """Raise or refresh an alert per discrepancy, priced (`money.priced`); returns (new
        ids, raised or refreshed ids)."""

    def clear(
        self, tenant_id: int, run_id: int, window: tuple[datetime, datetime], seen: set[int]
    ) -> int:
        """Resolve the live alerts of reconciliation's own kinds in `window` that this run no
        longer found (not in `seen`); returns how many."""

    def alerts(
        self, tenant_id: int, status: str | None = None, kind: str | None = None, limit: int = 500
    ) -> list[Alert]:
        """Unresolved first, then by money at stake; ValidationFailed for an unknown filter."""

    def alert(self, tenant_id: int, alert_id: int) -> Alert: ...

    def transition(self, tenant_id: int, alert_id: int, status: str, note: str | None) -> Alert: ...

    def totals(self, tenant_id: int) -> dict[str, Any]:
        """Open and acknowledged alerts: count and money at risk per currency."""

    def open_count(self) -> int: ...

    def last_success(self) -> datetime | None: ...

    def add_repair(
        self, alert_id: int, action: str, identifiers: Sequence[str], outcome: str, actor: str
    ) -> None: ...

    def repairs(self, alert_id: int) -> list[dict[str, Any]]: ...


def check_filters(status: str | None, kind: str | None) -> None:
    """ValidationFailed naming the field when `status` or `kind` is not one of ours."""
    if status is not None and status not in STATUSES:
        raise ValidationFailed([FieldError("status", f"must be one of {', '.join(STATUSES)}")])
    if kind is not None and kind not in KINDS:
        raise ValidationFailed([FieldError("kind", f"must be one of {', '.join(KINDS)}")])


def check_transition(status: str, note: str | None) -> None:
    """ValidationFailed for a status other than acknowledged or resolved, and for a note over
    2000 characters or with control characters (the /finance forms reach here without a
    request model)."""
    if status not in ("acknowledged", "resolved"):
        raise ValidationFailed([FieldError("status", "must be acknowledged or resolved")])
    if note is not None and len(note) > 2000:
        raise ValidationFailed([FieldError("note", "at most 2000 characters")])
    if note is not None and not is_free_text(note):
        raise ValidationFailed([FieldError("note", MESSAGES[FREE_TEXT])])


CSV_COLUMNS = (
    "id", "kind", "status", "customer", "meter", "window_start", "window_end", "our_units",
    "sent_units", "stripe_units", "difference", "money_minor", "currency", "note", "created_at",
)  # fmt: skip


def to_csv(alerts: Sequence[Alert]) -> str:
    """Alerts as CSV (one header row), numbers as plain decimals, times in ISO 8601 UTC; text
    neutralised against formula injection (`meterline.csv_export`)."""
    rows = ([a.as_dict()[c] for c in CSV_COLUMNS] for a in alerts)
    return csv_export.to_csv(CSV_COLUMNS, rows)


def raised(tenant_id: int, alert_id: int, d: Discrepancy) -> Notification:
    """`reconciliation.alert_raised` for a newly opened alert."""
    data = {"alert_id": alert_id, **{f.name: getattr(d, f.name) for f in fields(Discrepancy)},
            "money_minor": d.money_minor}  # fmt: skip
    return Notification(tenant_id, "reconciliation.alert_raised", datetime.now(UTC),
                        _plain(data), d.customer, key=f"alert:{alert_id}:raised")  # fmt: skip


def resolved(alert: Alert, by: str) -> Notification:
    """`reconciliation.alert_resolved`; `by` is `finance` or `reconciliation` (a later run
    no longer found the discrepancy)."""
    shown = alert.as_dict()
    data = {"alert_id": alert.id, "resolved_by": by,
            **{k: shown[k] for k in ("kind", "customer", "meter", "window_start", "window_end",
                                     "difference", "note")}}  # fmt: skip
    return Notification(alert.tenant_id, "reconciliation.alert_resolved", datetime.now(UTC),
                        data, alert.customer, key=f"alert:{alert.id}:resolved")  # fmt: skip


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v
            for k, v in data.items()}  # fmt: skip
