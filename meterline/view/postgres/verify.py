"""Comparing the view with Postgres: every hour and every month of every series still in the
view's lifetime, and every partition's watermark against its stored offset.

Run it when the aggregators are idle (or stopped): while batches flow, the view legitimately
trails Postgres by the batches between commit and apply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg_pool import ConnectionPool

from meterline.catalog.aggregation import fold
from meterline.catalog.model import Aggregation
from meterline.view.model import DAY_MS, HOUR_MS, month_start, next_month
from meterline.view.postgres.rebuild import LOOKBACK_DAYS, stored_offsets
from meterline.view.sync import SyncedView

AggregationOf = Callable[[int, str], Aggregation]

_HOURS = """
SELECT tenant_id, customer, meter, (extract(epoch FROM date_trunc('hour', bucket AT TIME ZONE 'UTC')
       AT TIME ZONE 'UTC') * 1000)::bigint AS hour
FROM usage_rollups_minute
WHERE bucket >= to_timestamp(%s / 1000.0) {tenant}
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
"""
_FOLD = """
SELECT value, (extract(epoch FROM latest_ts) * 1000)::bigint FROM usage_rollups_minute
WHERE tenant_id = %s AND customer = %s AND meter = %s
  AND bucket >= to_timestamp(%s / 1000.0) AND bucket < to_timestamp(%s / 1000.0)
"""


@dataclass(frozen=True)
class Mismatch:
    what: str
    expected: Decimal | int | float  # float: a missing watermark (nan)
    found: Decimal | int | float

    def __str__(self) -> str:
        return f"{self.what}: postgres {self.expected!r} redis {self.found!r}"


def verify(
    view: SyncedView,
    pool: ConnectionPool[Any],
    aggregation_of: AggregationOf,
    now_ms: int,
    tenant_id: int | None = None,
) -> list[Mismatch]:
    """Every difference between the view and Postgres (empty when they agree)."""
    out = list(_watermarks(view, pool))
    since = month_start(now_ms - LOOKBACK_DAYS * DAY_MS)
    with pool.connection() as conn:
        where = "AND tenant_id = %s" if tenant_id is not None else ""
        params: tuple[Any, ...] = (since,) if tenant_id is None else (since, tenant_id)
        hours = conn.execute(_HOURS.format(tenant=where), params).fetchall()
        months: set[tuple[int, str, str, int]] = set()
        for t, c, m, hour in hours:
            months.add((t, c, m, month_start(hour)))
            out.extend(_compare(view, conn, aggregation_of, t, c, m, hour, hour + HOUR_MS))
        for t, c, m, month in sorted(months):
            out.extend(_compare(view, conn, aggregation_of, t, c, m, month, next_month(month)))
    return out


def _watermarks(view: SyncedView, pool: ConnectionPool[Any]) -> Iterator[Mismatch]:
    marks = view.watermarks()
    if marks is None:
        yield Mismatch("view not ready (empty or rebuilding)", 1, 0)
        return
    for stream, offset in stored_offsets(pool).items():
        if marks.get(stream) != offset:
            yield Mismatch(f"watermark {stream}", offset, marks.get(stream, math.nan))


def _compare(
    view: SyncedView,
    conn: Any,
    aggregation_of: AggregationOf,
    tenant: int,
    customer: str,
    meter: str,
    lo: int,
    hi: int,
) -> Iterator[Mismatch]:
    agg = aggregation_of(tenant, meter)
    rows = conn.execute(_FOLD, (tenant, customer, meter, lo, hi)).fetchall()
    expected = fold(agg, rows)
    found = view.usage(tenant, customer, meter, agg, lo, hi)
    if expected != found:  # exact: both are sums of the same millionths
        span = "month" if hi - lo > DAY_MS else "hour"
        what = f"tenant {tenant} customer {customer!r} meter {meter} {span} starting {lo}"
        yield Mismatch(what, expected, found)
