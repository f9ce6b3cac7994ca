"""`UsageQuery`: usage series from the `usage_rollups_minute` table (one query per call)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import sql
from psycopg_pool import ConnectionPool

from meterline.catalog.aggregation import RULES, Combine
from meterline.catalog.model import Aggregation
from meterline.usage.model import (
    WINDOWS,
    UsageSeries,
    UsageStore,
    aligned_range,
    dense,
)

# Per (customer, window): the window's value and count; then folded over customers.
_SERIES = """
WITH per_customer AS (
    SELECT customer, date_bin(%(step)s, bucket, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS w,
           SUM(value) AS s, MAX(value) AS m,
           (array_agg(value ORDER BY latest_ts DESC, value DESC))[1] AS l,
           SUM(count) AS c
    FROM usage_rollups_minute
    WHERE tenant_id = %(tenant)s AND meter = %(meter)s AND bucket >= %(lo)s AND bucket < %(hi)s
      {customer}
    GROUP BY customer, w
)
SELECT w, {fold}, SUM(c) FROM per_customer GROUP BY w ORDER BY w
"""

# The whole range as one window: the series' total.
_TOTAL = """
WITH per_customer AS (
    SELECT customer, SUM(value) AS s, MAX(value) AS m,
           (array_agg(value ORDER BY latest_ts DESC, value DESC))[1] AS l
    FROM usage_rollups_minute
    WHERE tenant_id = %(tenant)s AND meter = %(meter)s AND bucket >= %(lo)s AND bucket < %(hi)s
      {customer}
    GROUP BY customer
)
SELECT {fold} FROM per_customer
"""

# One customer's buckets inside any of the ranges (epoch ms), every fold at once.
_RANGES = """
SELECT SUM(value), MAX(value),
       ((array_agg(value ORDER BY latest_ts DESC, value DESC))[1]),
       (extract(epoch FROM MAX(latest_ts)) * 1000)::bigint
FROM usage_rollups_minute
WHERE tenant_id = %(tenant)s AND customer = %(customer)s AND meter = %(meter)s AND ({ranges})
"""
_RANGE = "(bucket >= to_timestamp({lo} / 1000.0) AND bucket < to_timestamp({hi} / 1000.0))"
_COLUMN = {Combine.ADD: 0, Combine.MAX: 1, Combine.LATEST: 2}
"""The column of `_RANGES` that folds a series over time, by `RULES`."""
_LETTER = {Combine.ADD: "s", Combine.MAX: "m", Combine.LATEST: "l"}
_SQL = {Combine.ADD: "SUM", Combine.MAX: "MAX"}
_FOLD = {
    aggregation: f"{_SQL[rule.across_customers]}({_LETTER[rule.over_time]})"
    for aggregation, rule in RULES.items()
}
"""Each aggregation's total over customers, from their series' folds (`s`, `m`, `l`)."""


class UsageQuery(UsageStore):
    """Reads through a `psycopg_pool.ConnectionPool` (from `meterline.postgres.open_pool`)."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self._pool = pool

    def series(
        self,
        tenant_id: int,
        customer: str | None,
        meter: str,
        aggregation: Aggregation,
        start: datetime,
        end: datetime,
        window: str,
    ) -> UsageSeries:
        lo, hi = aligned_range(start, end, window)
        params = {
            "step": WINDOWS[window],
            "tenant": tenant_id,
            "meter": meter,
            "customer": customer,
            "lo": lo,
            "hi": hi,
        }
        where = sql.SQL("AND customer = %(customer)s" if customer is not None else "")
        fold = sql.SQL(_FOLD[aggregation])
        with self._pool.connection() as conn:
            rows = conn.execute(
                sql.SQL(_SERIES).format(customer=where, fold=fold), params
            ).fetchall()
            total_row = conn.execute(
                sql.SQL(_TOTAL).format(customer=where, fold=fold), params
            ).fetchone()
        found = {w: (Decimal(v), int(c)) for w, v, c in rows}
        total = Decimal(total_row[0]) if total_row and total_row[0] is not None else Decimal(0)
        return UsageSeries(customer, meter, window, dense(lo, hi, window, found), total)

    def fold_ranges(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        aggregation: Aggregation,
        ranges: Sequence[tuple[int, int]],
    ) -> tuple[Decimal, int] | None:
        if not ranges:
            return None
        where = sql.SQL(" OR ").join(
            sql.SQL(_RANGE).format(lo=sql.Literal(int(lo)), hi=sql.Literal(int(hi)))
            for lo, hi in ranges
        )
        params = {"tenant": tenant_id, "customer": customer, "meter": meter}
        with self._pool.connection() as conn:
            row = conn.execute(sql.SQL(_RANGES).format(ranges=where), params).fetchone()
        if row is None or row[0] is None:
            return None
        return Decimal(row[_COLUMN[RULES[aggregation].over_time]]), int(row[3])
