"""Our side in Postgres: slot pre-aggregates from `usage_rollups_minute` (split at the
recorded `report_boundaries`), the boundaries, the late hours and the counted events of
`usage_events`, and the figures a boundary learned late alerts with. The folding rules are
`reporter/rollups.py`'s."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from meterline.catalog.model import Aggregation
from meterline.postgres import Connection, Pool
from reporter.slots import SlotUsage

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


_LAST_VALUES = """
SELECT max(value) FILTER (WHERE bucket < %(at)s), max(value),
       (array_agg(value ORDER BY latest_ts DESC, bucket DESC) FILTER (WHERE bucket < %(at)s))[1],
       (array_agg(value ORDER BY latest_ts DESC, bucket DESC))[1]
FROM usage_rollups_minute
WHERE tenant_id = %(tenant)s AND customer = %(customer)s AND meter = %(meter)s
  AND bucket >= %(since)s AND bucket < %(end)s"""


def slot_usage(
    conn: Connection,
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


def slot_usage_of(
    conn: Connection,
    tenant_id: int,
    window: tuple[datetime, datetime],
    customers: Sequence[str],
    meters: Sequence[str],
) -> list[SlotUsage]:
    """The slots of these customers and meters whose minute buckets lie in `window`."""
    extra = " AND r.customer = ANY(%(customers)s) AND r.meter = ANY(%(meters)s)"
    params = {"tenant": tenant_id, "since": window[0], "until": window[1]}
    return _slots(conn, extra, {**params, "customers": list(customers), "meters": list(meters)})


def _slots(conn: Connection, extra: str, params: dict[str, Any]) -> list[SlotUsage]:
    rows = conn.execute(_SLOTS.format(extra=extra).encode(), params).fetchall()
    return [SlotUsage(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6])) for r in rows]


def customer_boundaries(
    conn: Connection, tenant_id: int, customers: set[str]
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


def maxima_before(
    conn: Connection, tenant_id: int, starts: dict[str, datetime], meters: set[str], lo: datetime
) -> dict[tuple[str, str, datetime], Decimal]:
    """Per (customer, meter, period start): the largest minute value of `meters` from the
    customer's period start (`starts`) to `lo`."""
    rows = conn.execute(
        "SELECT r.customer, r.meter, max(r.value) FROM usage_rollups_minute r "
        "JOIN unnest(%s::text[], %s::timestamptz[]) AS p(customer, since) "
        "ON p.customer = r.customer "
        "WHERE r.tenant_id = %s AND r.meter = ANY(%s) AND r.bucket >= p.since "
        "AND r.bucket < %s GROUP BY 1, 2",
        (list(starts), list(starts.values()), tenant_id, list(meters), lo),
    ).fetchall()
    return {(c, m, starts[c]): Decimal(v) for c, m, v in rows}


def late_hours(
    conn: Connection, tenant_id: int, received_since: datetime, before: datetime
) -> list[datetime]:
    """UTC hours before `before` that received events since `received_since` (late arrivals)."""
    rows = conn.execute(
        "SELECT DISTINCT date_trunc('hour', ts, 'UTC') FROM usage_events "
        "WHERE tenant_id = %s AND received_at >= %s AND ts < %s ORDER BY 1",
        (tenant_id, received_since, before),
    ).fetchall()
    return [r[0] for r in rows]


def events_behind(
    conn: Connection,
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


class PostgresUsageFigures:
    """`reporter.boundaries.UsageFigures` over `usage_rollups_minute`."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def summed(
        self, tenant_id: int, customer: str, meter: str, start: datetime, end: datetime
    ) -> Decimal:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(value), 0) FROM usage_rollups_minute WHERE tenant_id = %s "
                "AND customer = %s AND meter = %s AND bucket >= %s AND bucket < %s",
                (tenant_id, customer, meter, start, end),
            ).fetchone()
        return Decimal(row[0]) if row else Decimal(0)

    def last_values(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        span: tuple[datetime, datetime, datetime],
    ) -> tuple[Decimal, Decimal]:
        since, at, end = span
        with self._pool.connection() as conn:
            row = conn.execute(
                _LAST_VALUES,
                {"tenant": tenant_id, "customer": customer, "meter": meter, "since": since,
                 "at": at, "end": end},
            ).fetchone()  # fmt: skip
        assert row is not None  # an aggregate returns one row
        due, held = row[:2] if aggregation is Aggregation.MAX else row[2:]
        return Decimal(due or 0), Decimal(held or 0)
