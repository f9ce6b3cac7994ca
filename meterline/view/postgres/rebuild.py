"""Rebuilding the view exactly from Postgres, and deciding when it must be rebuilt.

`rebuild(view, pool, aggregation_of)` runs the protocol of `meterline.view.sync`: take the flag,
read the minute rollups still covered by live keys and every stored offset from ONE
repeatable-read snapshot, load them, restore the pending reservations Postgres records (granted
consume answers whose events the ledger does not hold yet: Redis never holds their only copy),
drop the pending reservations whose events the ledger already holds, then store the offsets as
watermarks and mark the view ready.

Restoring adds what is missing and never replaces: a consume granted while the rebuild runs
keeps its reservation. An event counted after the snapshot is in a batch past the snapshot's
offsets, applied after the rebuild, and that apply removes its reservation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from meterline.catalog.model import Aggregation
from meterline.values import to_decimal
from meterline.view.model import DAY_MS, Delta, ReservationKey
from meterline.view.sync import PendingReservation, SyncedView, stream_name

log = logging.getLogger(__name__)

AggregationOf = Callable[[int, str], Aggregation]
LOOKBACK_DAYS = 75  # a month key lives until its month ends plus 40 days of grace
_CHUNK = 5_000

_OFFSETS = "SELECT consumer_group, topic, partition, incarnation, next_offset FROM consumer_offsets"
_ROLLUPS = """
SELECT tenant_id, customer, meter, (extract(epoch FROM bucket) * 1000)::bigint, value,
       count, (extract(epoch FROM latest_ts) * 1000)::bigint
FROM usage_rollups_minute WHERE bucket >= to_timestamp(%s / 1000.0)
"""
# A consume's event is timed when its answer is claimed (`created_at`), so the index on
# `created_at` bounds the scan; whether its event is counted is the identity table's answer
# (`usage_event_ids`, whatever the event's day).
_GRANTED = """
SELECT a.tenant_id, a.customer, a.meter, a.event_id, a.amount, a.event_ms
FROM entitlement_answers a
WHERE a.created_at >= to_timestamp(%(since)s / 1000.0) - interval '1 day'
  AND a.status = 200 AND a.event_ms >= %(since)s
  AND NOT EXISTS (
    SELECT 1 FROM usage_event_ids i WHERE i.tenant_id = a.tenant_id AND i.event_id = a.event_id
  )
"""
# Each pending id is probed by index (LATERAL ... LIMIT 1): a semi-join of the ids against the
# table was planned as a hash of all of `usage_event_ids` for 100 ids or more
# (tests/integration/test_plans.py).
_COUNTED = """
SELECT p.tenant_id, p.event_id FROM unnest(%s::bigint[], %s::text[]) AS p(tenant_id, event_id)
CROSS JOIN LATERAL (
  SELECT 1 FROM usage_event_ids i
  WHERE i.tenant_id = p.tenant_id AND i.event_id = p.event_id LIMIT 1
) counted
"""


@dataclass(frozen=True)
class RebuildReport:
    rows: int
    streams: int
    reservations_dropped: int
    reservations_restored: int
    seconds: float


def rebuild(
    view: SyncedView,
    pool: ConnectionPool[Any],
    aggregation_of: AggregationOf,
    *,
    flag_ttl_s: int = 120,
    wait_s: float = 300.0,
) -> RebuildReport | None:
    """Rebuild the view; `None` when another process's rebuild finished it meanwhile.

    Raises TimeoutError when the flag stays held by others for `wait_s`; Redis and Postgres
    errors propagate (the flag then lapses after `flag_ttl_s`)."""
    deadline = time.monotonic() + wait_s
    while True:
        token = view.begin_rebuild(flag_ttl_s)
        if token is not None:
            return _rebuild(view, pool, aggregation_of, token, flag_ttl_s)
        if time.monotonic() > deadline:
            raise TimeoutError("another rebuild holds the view's flag")
        time.sleep(0.2)
        if view.watermarks() is not None:
            return None


def _rebuild(
    view: SyncedView,
    pool: ConnectionPool[Any],
    aggregation_of: AggregationOf,
    token: str,
    flag_ttl_s: int,
) -> RebuildReport:
    started = time.monotonic()
    since = int(time.time() * 1000) - LOOKBACK_DAYS * DAY_MS
    rows = 0
    with pool.connection() as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            marks = _marks(conn)
            with conn.cursor(name="rebuild_rollups") as cur:
                cur.execute(_ROLLUPS, (since,))
                for chunk in _chunks(cur, _CHUNK):
                    view.load(token, [_delta(r, aggregation_of) for r in chunk])
                    rows += len(chunk)
                    view.extend_rebuild(token, flag_ttl_s)
            restored = _restore_reservations(view, conn, since)
            dropped = _drop_counted_reservations(view, conn)
        conn.isolation_level = None
    if not view.finish_rebuild(token, marks):
        raise RuntimeError("the rebuild lost its flag before finishing (it took too long)")
    report = RebuildReport(rows, len(marks), dropped, restored, time.monotonic() - started)
    log.info("view rebuilt", extra={"report": report.__dict__})
    return report


def _delta(row: tuple[Any, ...], aggregation_of: AggregationOf) -> Delta:
    tenant, customer, meter, minute, value, count, latest = row
    return Delta(
        tenant, customer, meter, aggregation_of(tenant, meter), minute, value, count, latest
    )


def _restore_reservations(view: SyncedView, conn: psycopg.Connection[Any], since: int) -> int:
    pending = [
        PendingReservation(ReservationKey(t, c, m, e), to_decimal(a), int(at))
        for t, c, m, e, a, at in conn.execute(_GRANTED, {"since": since})
    ]
    for start in range(0, len(pending), _CHUNK):
        view.restore_reservations(pending[start : start + _CHUNK])
    return len(pending)


def _drop_counted_reservations(view: SyncedView, conn: psycopg.Connection[Any]) -> int:
    pending = view.pending_reservations()
    if not pending:
        return 0
    rows = conn.execute(
        _COUNTED, ([r.tenant_id for r in pending], [r.event_id for r in pending])
    ).fetchall()
    counted = {(t, e) for t, e in rows}
    done = [r for r in pending if (r.tenant_id, r.event_id) in counted]
    view.remove_reservations(done)
    return len(done)


def stored_offsets(pool: ConnectionPool[Any]) -> dict[str, int]:
    with pool.connection() as conn:
        return _marks(conn)


def _marks(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Each stored position by its stream (one per partition and incarnation)."""
    return {stream_name(g, t, p, i): int(o) for g, t, p, i, o in conn.execute(_OFFSETS)}


def _chunks(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
