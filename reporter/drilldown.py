"""What is behind an alert: the hours around it (ours, sent, Stripe), our meter events sent to
Stripe for it, and the counted usage events themselves — every number traceable to events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from meterline.postgres import Pool
from meterline.stripe.meter_events import PermanentStripeError, TransientStripeError
from meterline.stripe.summaries import SummaryReader
from reporter.alerts import Alert
from reporter.contexts import billed_at
from reporter.postgres.contexts import load_history
from reporter.postgres.ledger import PostgresReportLedger
from reporter.postgres.rollups import events_behind, slot_usage
from reporter.slots import HOUR, floor_hour

AROUND = timedelta(hours=2)


@dataclass(frozen=True)
class HourRow:
    hour: datetime
    ours: Decimal
    sent: Decimal
    stripe: Decimal | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "hour": self.hour.isoformat().replace("+00:00", "Z"),
            "ours": float(self.ours),
            "sent": float(self.sent),
            "stripe": None if self.stripe is None else float(self.stripe),
        }


def drill_down(pool: Pool, summaries: SummaryReader, alert: Alert) -> dict[str, Any]:
    """The alert's hours (two either side), ledger rows and counted events (at most 200)."""
    start = floor_hour(alert.window_start) - AROUND
    end = floor_hour(alert.window_start) + HOUR + AROUND
    ledger = PostgresReportLedger(pool).window(
        alert.tenant_id, alert.customer, alert.meter, start, end
    )
    with pool.connection() as conn:
        usage = slot_usage(conn, alert.tenant_id, start, end, alert.customer, alert.meter)
        events = events_behind(
            conn,
            alert.tenant_id,
            alert.customer,
            alert.meter,
            (alert.window_start, alert.window_end),
        )
    stripe, stripe_error = _stripe(pool, summaries, alert, start, end)
    hours = []
    for i in range(int((end - start) / HOUR)):
        hour = start + i * HOUR
        ours = sum((u.total for u in usage if floor_hour(u.start) == hour), Decimal(0))
        sent = sum(
            (
                r.value
                for r in ledger
                if floor_hour(r.slot_start) == hour and r.status in ("sent", "pending")
            ),
            Decimal(0),
        )
        hours.append(
            HourRow(hour, ours, sent, None if stripe is None else stripe.get(hour, Decimal(0)))
        )
    return {
        "hours": [h.as_dict() for h in hours],
        "stripe_error": stripe_error,
        "ledger": [_ledger_dict(r) for r in ledger],
        "events": [
            {"id": e[0], "timestamp": _iso(e[1]), "value": float(e[2]), "received_at": _iso(e[3])}
            for e in events
        ],
    }


def _stripe(
    pool: Pool, summaries: SummaryReader, alert: Alert, start: datetime, end: datetime
) -> tuple[dict[datetime, Decimal] | None, str | None]:
    with pool.connection() as conn:
        history = load_history(conn, alert.tenant_id, [alert.customer])
    found = billed_at(history, alert.customer, alert.meter, start)
    if found is None:
        return None, "the customer or meter was not billed through Stripe then"
    customer, meter = found
    try:
        values = summaries.hourly(
            meter.stripe_meter_id,
            customer.stripe_customer_id,
            int(start.timestamp()),
            int(end.timestamp()),
        )
    except (TransientStripeError, PermanentStripeError) as exc:
        return None, str(exc)
    return {datetime.fromtimestamp(h, UTC): v for h, v in values.items()}, None


def _ledger_dict(r: Any) -> dict[str, Any]:
    return {
        "identifier": r.identifier,
        "slot_start": _iso(r.slot_start),
        "revision": r.revision,
        "value": float(r.value),
        "status": r.status,
        "error": r.error,
        "sent_at": _iso(r.sent_at),
    }


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat().replace("+00:00", "Z")
