"""Reading our side: slot pre-aggregates from the minute rollups, and the events behind them.

`usage_rollups_minute` is the aggregator's table (the system of record, exactly-once). A slot
folds its minute buckets with the meter's aggregation: sum and count add up, max takes the
largest, latest takes the value with the newest `latest_ts`. Hours are UTC hours.

A `max` meter is billed through a Stripe `last` meter, which bills the period's last event.
So the value reported for a max slot is the *period-to-date* maximum up to the slot's end
(`period_maxima`): the last event of a period then carries the period's maximum. A period
starts at the customer's latest billing boundary at or before the slot (`report_boundaries`),
or at the start of the slot's UTC month when no boundary is known (no subscription: nothing
is invoiced, the month keeps the running maximum bounded).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from meterline.catalog.aggregation import RULES, Combine
from meterline.catalog.model import Aggregation
from reporter.scope import TenantScope

_SLOTS = """
SELECT r.customer, r.meter,
       coalesce(b.at, date_trunc('hour', r.bucket, 'UTC')) AS slot,
       sum(r.value), max(r.value),
       (array_agg(r.value ORDER BY r.latest_ts DESC, r.bucket DESC))[1],
       sum(r.count)
FROM usage_rollups_minute r
LEFT JOIN LATERAL (
    SELECT max(rb.at) AS at FROM report_boundaries rb
    WHERE rb.tenant_id = r.tenant_id AND rb.customer = r.customer
      AND rb.at > date_trunc('hour', r.bucket, 'UTC') AND rb.at <= r.bucket
) b ON true
WHERE r.tenant_id = %(tenant)s AND r.bucket >= %(since)s AND r.bucket < %(until)s {extra}
GROUP BY 1, 2, 3
"""


@dataclass(frozen=True, slots=True)
class SlotUsage:
    customer: str
    meter: str
    start: datetime
    total: Decimal
    peak: Decimal
    last: Decimal
    count: int

    def value(self, aggregation: Aggregation) -> Decimal:
        """The slot's value for a meter with this aggregation (by how it combines over time)."""
        how = RULES[aggregation].over_time
        return (
            self.peak if how is Combine.MAX else self.last if how is Combine.LATEST else self.total
        )


def slot_usage(
    conn: psycopg.Connection[Any],
    tenant_id: int,
    since: datetime,
    until: datetime,
    customer: str | None = None,
    meter: str | None = None,
) -> list[SlotUsage]:
    """Every slot with usage whose minute buckets lie in [since, until)."""
    params: dict[str, Any] = {"tenant": tenant_id, "since": since, "until": until}
    extra = ""
    if customer is not None:
        extra += " AND r.customer = %(customer)s"
        params["customer"] = customer
    if meter is not None:
        extra += " AND r.meter = %(meter)s"
        params["meter"] = meter
    return _slots(conn, extra, params)


def _slots(conn: psycopg.Connection[Any], extra: str, params: dict[str, Any]) -> list[SlotUsage]:
    rows = conn.execute(_SLOTS.format(extra=extra).encode(), params).fetchall()
    return [SlotUsage(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6])) for r in rows]


def period_maxima(
    conn: psycopg.Connection[Any],
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
        extra = " AND r.customer = ANY(%(customers)s) AND r.meter = ANY(%(meters)s)"
        params = {"tenant": scope.tenant_id, "since": lo, "until": since}
        mine += _slots(conn, extra, {**params, "customers": late, "meters": sorted(keys)})
    if not mine:
        return rest
    bounds = customer_boundaries(conn, scope.tenant_id, {u.customer for u in mine})
    base = _maxima_before(conn, scope.tenant_id, mine, keys, lo, bounds)
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


def customer_boundaries(
    conn: psycopg.Connection[Any], tenant_id: int, customers: set[str]
) -> dict[str, list[datetime]]:
    """The recorded billing boundaries (`report_boundaries`) of these customers."""
    rows = conn.execute(
        "SELECT customer, at FROM report_boundaries WHERE tenant_id = %s AND customer = ANY(%s)",
        (tenant_id, list(customers)),
    ).fetchall()
    out: dict[str, list[datetime]] = {}
    for customer, at in rows:
        out.setdefault(customer, []).append(at)
    return out


def _maxima_before(
    conn: psycopg.Connection[Any],
    tenant_id: int,
    usage: Sequence[SlotUsage],
    keys: set[str],
    lo: datetime,
    bounds: dict[str, list[datetime]],
) -> dict[tuple[str, str, datetime], Decimal]:
    starts = {u.customer: period_start(lo, bounds.get(u.customer, ())) for u in usage}
    rows = conn.execute(
        "SELECT r.customer, r.meter, max(r.value) FROM usage_rollups_minute r "
        "JOIN unnest(%s::text[], %s::timestamptz[]) AS p(customer, since) "
        "ON p.customer = r.customer "
        "WHERE r.tenant_id = %s AND r.meter = ANY(%s) AND r.bucket >= p.since "
        "AND r.bucket < %s GROUP BY 1, 2",
        (list(starts), list(starts.values()), tenant_id, list(keys), lo),
    ).fetchall()
    return {(c, m, starts[c]): Decimal(v) for c, m, v in rows}


def late_hours(
    conn: psycopg.Connection[Any], tenant_id: int, received_since: datetime, before: datetime
) -> list[datetime]:
    """UTC hours before `before` that received events since `received_since` (late arrivals)."""
    rows = conn.execute(
        "SELECT DISTINCT date_trunc('hour', ts, 'UTC') FROM usage_events "
        "WHERE tenant_id = %s AND received_at >= %s AND ts < %s ORDER BY 1",
        (tenant_id, received_since, before),
    ).fetchall()
    return [r[0] for r in rows]


def events_behind(
    conn: psycopg.Connection[Any],
    tenant_id: int,
    customer: str,
    meter: str,
    window: tuple[datetime, datetime],
    limit: int = 200,
) -> Sequence[tuple[Any, ...]]:
    """The counted events of a window, oldest first: (id, ts, value, received_at)."""
    return conn.execute(
        "SELECT event_id, ts, value, received_at FROM usage_events "
        "WHERE tenant_id = %s AND customer = %s AND meter = %s AND ts >= %s AND ts < %s "
        "ORDER BY ts, event_id LIMIT %s",
        (tenant_id, customer, meter, window[0], window[1], limit),
    ).fetchall()
