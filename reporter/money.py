"""The money of an alert: what the invoice of the alert's period is off by, at the price frozen
in the billing context that billed the usage.

A difference of units is not priced at a marginal rate: inside included units or a cheaper
tier that is wrong. It is priced as `line(expected) - line(held)` for the whole period
(`meterline.catalog.amounts`), where *expected* is our usage of the period (the rollups from
the period's start, the customer's latest boundary or context change at or before the alert,
to the next one) and *held* is what the invoice bills instead: expected plus the alert's
difference (minus it for `after_invoice_finalized`, usage the finalized invoice lacks). A
`split_after_push` is the other way round: its period's rollups run to where the boundary was
recorded, the end of the slot kept whole, so they are what the invoice bills (held), and
expected is them less the units after the true boundary (plus them for the new context's
side of a plan change, whose period starts there and lacks them: its difference is negative,
so the same rule holds). For last-value meters (max, latest)
the invoice bills one value, and the alert's hour value stands for it: the money is what the
invoice is off by if that hour carries the period's last value (a `split_after_push` carries
the values its period bills and should bill: `boundaries.py`). Each alert is priced as if it
were the period's only discrepancy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from meterline.catalog.amounts import difference_amount
from reporter.contexts import EPOCH, ContextHistory
from reporter.postgres.contexts import load_history
from reporter.postgres.rollups import customer_boundaries, slot_usage
from reporter.rollups import period_start
from reporter.scope import BilledMeter, period_price

if TYPE_CHECKING:  # alerts.py prices what it records: imported for types only
    from reporter.alerts import Discrepancy

LACKING = ("after_invoice_finalized",)  # kinds whose difference the invoice lacks
MOVED = ("split_after_push",)  # kinds whose difference the period's rollups already hold
Period = tuple[str, str, datetime, datetime | None]


def priced(conn: Any, tenant_id: int, found: Sequence[Discrepancy]) -> list[Discrepancy]:
    """`found`, each with its money (when a context billed its meter then), read on `conn`
    (a Postgres connection)."""
    if not found:
        return []
    history = load_history(conn, tenant_id, sorted({d.customer for d in found}))
    bounds = customer_boundaries(conn, tenant_id, {d.customer for d in found})
    expected: dict[Period, Decimal] = {}
    out = []
    for d in found:
        meter = history.meter(d.customer, d.meter, d.window_start)
        if meter is None:
            out.append(d)
            continue
        period = _period(history, bounds, d)
        if meter.formula == "last":
            units = d.our_units
        else:
            if period not in expected:
                expected[period] = _our_units(conn, tenant_id, meter, period)
            units = expected[period] - d.difference if d.kind in MOVED else expected[period]
        out.append(dataclasses.replace(d, money=money(meter, units, d)))
    return out


def money(meter: BilledMeter, expected: Decimal, d: Discrepancy) -> Decimal:
    """What the period's invoice is off by: line(expected) against line(held)."""
    held = expected - d.difference if d.kind in LACKING else expected + d.difference
    return difference_amount(period_price(meter), expected, held)


def _period(history: ContextHistory, bounds: dict[str, list[datetime]], d: Discrepancy) -> Period:
    """The invoice period holding the alert's start: between the customer's boundaries and
    context changes around it (from the UTC month's start when none is known before it)."""
    at = d.window_start
    changes = [c.since for c in history.contexts.get(d.customer, ()) if c.since > EPOCH]
    marks = {*bounds.get(d.customer, ()), *changes}
    start = period_start(at, marks)
    end = min([m for m in marks if m > at], default=None)
    return d.customer, d.meter, start, end


def _our_units(conn: Any, tenant_id: int, meter: BilledMeter, period: Period) -> Decimal:
    customer, key, start, end = period
    until = end or datetime(9999, 1, 1, tzinfo=UTC)
    usage = slot_usage(conn, tenant_id, start, until, customer=customer, meter=key)
    return sum((u.value(meter.aggregation) for u in usage), Decimal(0))
