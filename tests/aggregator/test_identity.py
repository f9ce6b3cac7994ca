"""One identity per (tenant, event id), whatever the event's time: a retry stamped on another UTC
day (a server-stamped time, a consume retried after midnight) is a copy, counted once in the
ledger, the rollups and the Redis view. The seeded model test checks every batch's outcome
against a plain dict of first-seen events that shares no code with the aggregator."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from aggregator.batch import Batch
from aggregator.decoding import Events
from aggregator.postgres.ledger import LedgerWriter, prepare
from meterline.catalog.model import Aggregation
from meterline.clock import SystemClock
from meterline.events import UsageEvent
from meterline.postgres import connect
from meterline.postgres.migrate import available_migrations
from meterline.postgres.partitions import (
    PartitionManager,
    drop_partitions_before,
    forget_ids,
    partition_name,
)
from meterline.view.postgres.rebuild import rebuild, stored_offsets
from meterline.view.postgres.verify import verify
from tests.aggregator.support import (
    Aggregator,
    aggregation_of,
    consumed,
    publish,
    redis_view,
    rollups,
    running,
    setup_tenant,
    wait_for,
)
from tests.fixtures.services import Topics

pytestmark = pytest.mark.integration

DAY = 86_400_000
NOW = SystemClock().now_ms()
MIDNIGHT = NOW - NOW % DAY  # the last 00:00 UTC


@pytest.fixture
def writer(pg_conninfo: str) -> Iterator[LedgerWriter]:
    w = LedgerWriter(lambda: connect(pg_conninfo), "g", "t")
    yield w
    w.reset()


def ledger(pool: ConnectionPool) -> dict[tuple[int, str], tuple[int, str, float]]:
    """(tenant, id) -> (day index, customer, value) of every ledger row; a second row of one
    identity fails the test."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT tenant_id, event_id, day - DATE '1970-01-01', customer, value::float8 "
            "FROM usage_events"
        ).fetchall()
    out = {(t, i): (d, c, v) for t, i, d, c, v in rows}
    assert len(out) == len(rows), "one identity has two ledger rows"
    return out


def test_a_retry_stamped_after_midnight_is_counted_once(
    writer: LedgerWriter, pool: ConnectionPool
) -> None:
    first = UsageEvent(1, "retry-1", "c1", "calls", 3.0, MIDNIGHT - 1000, MIDNIGHT - 1000)
    retry = UsageEvent(1, "retry-1", "c1", "calls", 3.0, MIDNIGHT + 1000, MIDNIGHT + 1000)
    done = writer.commit(prepare(one_partition([first], 1)), {0: None}, aggregation_of)
    assert done.duplicates == 0
    again = writer.commit(prepare(one_partition([retry], 2)), {0: 1}, aggregation_of)
    assert len(again.new_events[0]) == 0 and again.duplicates == 1
    both = Batch(
        events={0: Events.of([first]), 1: Events.of([retry, retry])}, ends={0: 3, 1: 2}, records=3
    )
    done = writer.commit(prepare(both), {0: 2, 1: None}, aggregation_of)
    assert done.duplicates == 3
    assert ledger(pool) == {(1, "retry-1"): ((MIDNIGHT - 1000) // DAY, "c1", 3.0)}
    minute = MIDNIGHT - 60_000
    assert rollups(pool, 1) == {("c1", "calls", minute): (3.0, 1)}


def one_partition(evs: list[UsageEvent], end: int) -> Batch:
    return Batch(events={0: Events.of(evs)}, ends={0: end}, records=len(evs))


METERS = ("calls", "requests")  # sum, count


class Model:
    """The oracle: the first copy seen of each (tenant, id), in the order the batch lists its
    partitions and each partition its events."""

    def __init__(self) -> None:
        self.first: dict[tuple[int, str], UsageEvent] = {}

    def take(self, batch: dict[int, list[UsageEvent]]) -> int:
        """Record the batch; the number of copies it held (events not counted)."""
        copies = 0
        for evs in batch.values():
            for e in evs:
                if (e.tenant_id, e.id) in self.first:
                    copies += 1
                else:
                    self.first[(e.tenant_id, e.id)] = e
        return copies

    def ledger(self) -> dict[tuple[int, str], tuple[int, str, float]]:
        return {k: (e.timestamp_ms // DAY, e.customer, e.value) for k, e in self.first.items()}

    def rollups(self, tenant: int) -> dict[tuple[str, str, int], tuple[float, int]]:
        out: dict[tuple[str, str, int], tuple[float, int]] = {}
        for e in self.first.values():
            if e.tenant_id == tenant:
                key = (e.customer, e.meter, e.timestamp_ms - e.timestamp_ms % 60_000)
                value, n = out.get(key, (0.0, 0))
                out[key] = (value + (1.0 if e.meter == "requests" else e.value), n + 1)
        return out


class Traffic:
    """Seeded batches: fresh ids (some reused by chance, some shared by the two tenants), and
    copies of earlier events, either resent as they were or retried with a new server-stamped
    time, often on the other side of a midnight, sometimes under another customer."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.sent: list[UsageEvent] = []

    def time(self) -> int:
        r = self.rng
        day = MIDNIGHT + r.randrange(-3, 1) * DAY
        return day + r.choice([r.randrange(DAY), r.randrange(3000), DAY - 1 - r.randrange(3000)])

    def event(self) -> UsageEvent:
        r = self.rng
        if self.sent and r.random() < 0.4:
            old = r.choice(self.sent)
            if r.random() < 0.5:
                return old
            customer = old.customer if r.random() < 0.8 else f"c{r.randrange(4)}"
            ts = self.time()
            return UsageEvent(old.tenant_id, old.id, customer, old.meter, old.value, ts, ts)
        ts = self.time()
        e = UsageEvent(
            r.choice((1, 2)),
            f"e{r.randrange(400)}",
            f"c{r.randrange(4)}",
            r.choice(METERS),
            float(r.randrange(1, 50)),
            ts,
            ts,
        )
        self.sent.append(e)
        return e

    def batch(self) -> dict[int, list[UsageEvent]]:
        """A batch's events by partition: one customer's events stay on one partition, as the
        topic's key (tenant/customer) keeps them."""
        out: dict[int, list[UsageEvent]] = {}
        for _ in range(self.rng.randrange(1, 60)):
            e = self.event()
            out.setdefault((e.tenant_id * 7 + int(e.customer[1:])) % 4, []).append(e)
        return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counted_totals_match_first_seen_ids_after_every_batch(
    writer: LedgerWriter, pool: ConnectionPool, seed: int
) -> None:
    traffic, model = Traffic(seed), Model()
    ends: dict[int, int] = {}
    for _ in range(30):
        placed = traffic.batch()
        start = {p: ends.get(p) for p in placed}
        batch = Batch(
            events={p: Events.of(evs) for p, evs in placed.items()},
            ends={p: (ends.get(p) or 0) + len(evs) for p, evs in placed.items()},
            records=sum(map(len, placed.values())),
        )
        done = writer.commit(prepare(batch), start, aggregation_of)
        ends.update(batch.ends)
        assert done.duplicates == model.take(placed)
        assert ledger(pool) == model.ledger()
        for tenant in (1, 2):
            assert rollups(pool, tenant) == model.rollups(tenant)


def test_a_retry_across_midnight_is_counted_once_in_the_ledger_rollups_and_view(
    pool: ConnectionPool,
    service_env: dict[str, str],
    kafka_topics: Topics,
    redis_url: str,
    tmp_path: Path,
) -> None:
    tenant = setup_tenant(pool)
    first = UsageEvent(tenant, "r-1", "cust", "calls", 5.0, MIDNIGHT - 1000, MIDNIGHT - 1000)
    retry = UsageEvent(tenant, "r-1", "cust", "calls", 5.0, MIDNIGHT + 1000, MIDNIGHT + 1000)
    other = UsageEvent(tenant, "r-2", "cust", "calls", 2.0, MIDNIGHT + 2000, MIDNIGHT + 2000)
    boot = service_env["METERLINE_KAFKA_BOOTSTRAP"]
    publish(boot, kafka_topics.usage, [first])
    publish(boot, kafka_topics.usage, [retry, other])
    view = redis_view(redis_url)
    with running(Aggregator(service_env, tmp_path / "agg.log")):
        wait_for(lambda: consumed(pool) == 3, 120, "every message to be consumed")
        wait_for(lambda: view.watermarks() == stored_offsets(pool), 60, "the view to catch up")
    assert {i: v for (_t, i), (_d, _c, v) in ledger(pool).items()} == {"r-1": 5.0, "r-2": 2.0}
    assert sum(n for _v, n in rollups(pool, tenant).values()) == 2
    span = (MIDNIGHT - 3_600_000, MIDNIGHT + 3_600_000)
    assert view.usage(tenant, "cust", "calls", Aggregation.SUM, *span) == 7.0
    assert verify(view, pool, aggregation_of, SystemClock().now_ms()) == []


def test_ids_leave_the_window_with_their_ledger_partition(
    writer: LedgerWriter, pool: ConnectionPool
) -> None:
    day = MIDNIGHT // DAY - 3
    per_day = {d: [f"d{d}-{n}" for n in range(300)] for d in (day, day + 1, day + 2)}
    evs = [
        UsageEvent(1, i, "c1", "calls", 1.0, d * DAY + n * 1000, NOW)
        for d, ids in per_day.items()
        for n, i in enumerate(ids)
    ]
    writer.commit(prepare(one_partition(evs, len(evs))), {0: None}, aggregation_of)
    with pool.connection() as conn:
        for d in (day, day + 1):  # counted on two days before migration 0008: the later holds it
            conn.execute(
                "INSERT INTO usage_events VALUES (1, 'twice', %s, 'c1', 'calls', %s, 1, now())",
                (epoch(d), datetime.fromtimestamp(d * DAY / 1000, UTC)),
            )
        conn.execute("INSERT INTO usage_event_ids VALUES (1, 'twice', %s)", (epoch(day + 1),))
        assert forget_ids(conn, partition_name(epoch(day)), pages=1) == 300
        assert forget_ids(conn, partition_name(epoch(day)), pages=1) == 0
        assert conn.execute("SELECT count(*) FROM usage_event_ids").fetchone() == (601,)
        assert drop_partitions_before(conn, epoch(day + 2)) == [
            partition_name(epoch(day)),
            partition_name(epoch(day + 1)),
        ]
        kept = conn.execute("SELECT event_id FROM usage_event_ids").fetchall()
    assert {i for (i,) in kept} == set(per_day[day + 2])
    assert set(ledger(pool)) == {(1, i) for i in per_day[day + 2]}


def epoch(day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day)


def test_a_rebuild_drops_the_reservations_of_counted_ids(
    writer: LedgerWriter, pool: ConnectionPool, redis_url: str
) -> None:
    # The rebuild finds counted ids by (tenant, id), now in `usage_event_ids`.
    view = redis_view(redis_url)
    token = view.begin_rebuild(30)  # an empty view is exact once marked ready
    assert token is not None and view.finish_rebuild(token, {})
    for i in ("counted", "pending"):
        view.reserve(1, "c1", "calls", i, 1.0, None, MIDNIGHT, MIDNIGHT + DAY, NOW)
    counted = UsageEvent(1, "counted", "c1", "calls", 1.0, NOW, NOW)
    writer.commit(prepare(one_partition([counted], 1)), {0: None}, aggregation_of)
    report = rebuild(view, pool, aggregation_of)
    assert report is not None and report.reservations_dropped == 1
    assert [r.event_id for r in view.pending_reservations()] == ["pending"]


def test_the_migration_keeps_every_counted_id_of_an_existing_ledger(pg_conninfo: str) -> None:
    base, name = pg_conninfo.rsplit("/", 1)[0], f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(f"{base}/{name}", autocommit=True) as conn:
            migrations = {m.version: m.sql for m in available_migrations()}
            for version in sorted(v for v in migrations if v < 8):
                conn.execute(migrations[version].encode())
            PartitionManager().ensure(conn, [date(2026, 11, 20), date(2026, 11, 21)])
            rows = [(1, "a", "2026-11-20"), (1, "a", "2026-11-21"), (2, "a", "2026-11-20")]
            for tenant, event_id, day in rows:  # "a" of tenant 1: counted twice before 0008
                conn.execute(
                    "INSERT INTO usage_events VALUES (%s, %s, %s, 'c', 'm', now(), 1, now())",
                    (tenant, event_id, day),
                )
            conn.execute(migrations[8].encode())
            ids = conn.execute("SELECT tenant_id, event_id, day::text FROM usage_event_ids")
            assert sorted(ids.fetchall()) == [(1, "a", "2026-11-21"), (2, "a", "2026-11-20")]
            keys = conn.execute(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = 'usage_events'::regclass"
                " AND contype = 'p'"
            ).fetchone()
            assert keys == (0,)
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
