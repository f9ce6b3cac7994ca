"""Reading our side: slot pre-aggregates from the minute rollups, and the events behind them.

`usage_rollups_minute` is the aggregator's table (the system of record, exactly-once). A slot
folds its minute buckets with the meter's aggregation: sum and count add up, max takes the
largest, latest takes the value with the newest `latest_ts`. Hours are UTC hours. The queries
are in `reporter/postgres/rollups.py`; this module keeps the running maxima.

A `max` meter is billed through a Stripe `last` meter, which bills the period's last event.
So the value reported for a max slot is the *period-to-date* maximum up to the slot's end
(`period_maxima`): the last event of a period then carries the period's maximum. A period
starts at the customer's latest billing boundary at or before the slot (`report_boundaries`),
or at the start of the slot's UTC month when no boundary is known (no subscription: nothing
is invoiced, the month keeps the running maximum bounded).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from meterline.catalog.model import Aggregation
from meterline.postgres import Connection
from reporter.postgres import rollups as queries
from reporter.scope import TenantScope
from reporter.slots import SlotUsage


def period_maxima(
    conn: Connection,
    scope: TenantScope,
    usage: Sequence[SlotUsage],
    lo: datetime,
    since: datetime,
) -> list[SlotUsage]:
    """`usage` with each max meter slot's `peak` replaced by its period-to-date maximum.

    `usage` must hold every slot in [since, ...) of the max meters it reports on, and may hold
    late slots before `since`: their customers' max meter slots in [lo, since) are read again
    here, because a late hour raises the running maximum of every later slot of its period.
    The maximum before `lo` in each period is read in one query. Other meters' slots are
    returned unchanged.
    """
    keys = {m.key for _, m in scope.pairs() if m.aggregation is Aggregation.MAX}
    if not keys:
        return list(usage)
    rest = [u for u in usage if u.meter not in keys]
    mine = [u for u in usage if u.meter in keys and u.start >= since]
    late = sorted({u.customer for u in usage if u.meter in keys and u.start < since})
    if late:
        mine += queries.slot_usage_of(conn, scope.tenant_id, (lo, since), late, sorted(keys))
    if not mine:
        return rest
    bounds = queries.customer_boundaries(conn, scope.tenant_id, {u.customer for u in mine})
    starts = {u.customer: period_start(lo, bounds.get(u.customer, ())) for u in mine}
    base = queries.maxima_before(conn, scope.tenant_id, starts, keys, lo)
    return rest + running_maxima(mine, base, bounds)


def running_maxima(
    usage: Iterable[SlotUsage],
    base: dict[tuple[str, str, datetime], Decimal],
    bounds: dict[str, list[datetime]],
) -> list[SlotUsage]:
    """Each slot's `peak` as the maximum of its period so far; `base[(customer, meter,
    period start)]` is the period's maximum before the first slot given. Pure."""
    out: list[SlotUsage] = []
    running: dict[tuple[str, str, datetime], Decimal] = {}
    for u in sorted(usage, key=lambda u: (u.customer, u.meter, u.start)):
        key = (u.customer, u.meter, period_start(u.start, bounds.get(u.customer, ())))
        peak = max(u.peak, running.get(key, base.get(key, u.peak)))
        running[key] = peak
        out.append(replace(u, peak=peak))
    return out


def period_start(when: datetime, boundaries: Iterable[datetime]) -> datetime:
    """The latest boundary at or before `when`, else the start of its UTC month."""
    month = when.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return max((b for b in boundaries if b <= when), default=month)
