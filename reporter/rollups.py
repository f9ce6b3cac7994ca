"""Reading our side: slot pre-aggregates from the minute rollups, and the events behind them.

`usage_rollups_minute` is the aggregator's table (the system of record, exactly-once). A slot
folds its minute buckets with the meter's aggregation: sum and count add up, max takes the
largest, latest takes the value with the newest `latest_ts`. Hours are UTC hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from meterline.catalog.model import Aggregation

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
        """The slot's value for a meter with this aggregation."""
        if aggregation is Aggregation.MAX:
            return self.peak
        if aggregation is Aggregation.LATEST:
            return self.last
        return self.total


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
    rows = conn.execute(_SLOTS.format(extra=extra).encode(), params).fetchall()
    return [SlotUsage(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6])) for r in rows]


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
