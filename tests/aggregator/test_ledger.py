"""`LedgerWriter` against a real Postgres: the COPY block and its escaping fallback, and which
events count as new (every one, some, none; copies within a batch, across its partitions)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg_pool import ConnectionPool

from aggregator.batch import Batch
from aggregator.decoding import Events
from aggregator.postgres.ledger import Fenced, LedgerWriter, copy_block, prepare, rollup_block
from meterline.catalog.model import Aggregation
from meterline.clock import SystemClock
from meterline.events import UsageEvent
from meterline.postgres import connect
from meterline.view.model import Delta
from tests.aggregator.support import aggregation_of, rollups

NOW = SystemClock().now_ms()
ODD_IDS = ["back\\slash", "tab\there", "new\nline", "carriage\rreturn", "\\N", "ünïcødé ✓"]


def events(ids: list[str], customer: str = "c1", value: float = 2.5) -> list[UsageEvent]:
    return [UsageEvent(1, i, customer, "calls", value, NOW - n, NOW) for n, i in enumerate(ids)]


def batch_of(evs: list[UsageEvent], partition: int = 0, start: int = 0) -> Batch:
    cols = Events.of(evs)
    return Batch(events={partition: cols}, ends={partition: start + len(evs)}, records=len(evs))


def test_copy_block_writes_text_rows_and_refuses_fields_that_need_escaping() -> None:
    e = UsageEvent(7, "evt-1", "cust", "calls", 0.1, 86_400_000 * 3 + 5, 42)
    row = f"7\tevt-1\t3\tcust\tcalls\t{86_400_000 * 3 + 5}\t0.1\t42\n"
    assert copy_block(Events.of([e])) == row
    assert copy_block(Events()) == ""
    for odd in ODD_IDS[:5]:
        assert copy_block(Events.of([e, UsageEvent(7, "ok", odd, "calls", 1.0, 5, 5)])) is None
    assert copy_block(Events.of(events([ODD_IDS[5]]))) is not None


def test_rollup_block_writes_text_rows_and_refuses_fields_that_need_escaping() -> None:
    d = Delta(7, "cust", "peak", Aggregation.MAX, 120_000, 0.1, 3, 125_000)
    assert rollup_block([d]) == "m\t7\tcust\tpeak\t120000\t0.1\t3\t125000\n"
    for odd in ODD_IDS[:5]:
        other = Delta(7, odd, "calls", Aggregation.SUM, 60_000, 1.0, 1, 60_000)
        assert rollup_block([d, other]) is None


@pytest.fixture
def writer(pg_conninfo: str) -> Iterator[LedgerWriter]:
    w = LedgerWriter(lambda: connect(pg_conninfo), "g", "t")
    yield w
    w.reset()


def ledger_ids(pool: ConnectionPool) -> set[str]:
    with pool.connection() as conn:
        return {r[0] for r in conn.execute("SELECT event_id FROM usage_events").fetchall()}


@pytest.mark.integration
def test_ids_that_need_escaping_are_stored_exactly(
    writer: LedgerWriter, pool: ConnectionPool
) -> None:
    done = writer.commit(prepare(batch_of(events(ODD_IDS))), {0: None}, aggregation_of)
    assert ledger_ids(pool) == set(ODD_IDS)
    assert len(done.new_events[0]) == len(ODD_IDS) and done.duplicates == 0


@pytest.mark.integration
def test_customers_that_need_escaping_are_rolled_up_exactly(
    writer: LedgerWriter, pool: ConnectionPool
) -> None:
    evs = [e for n, odd in enumerate(ODD_IDS) for e in events([f"e{n}"], customer=odd)]
    writer.commit(prepare(batch_of(evs)), {0: None}, aggregation_of)
    assert {c: n for (c, _m, _b), (_v, n) in rollups(pool, 1).items()} == dict.fromkeys(ODD_IDS, 1)


@pytest.mark.integration
def test_new_events_when_all_some_or_none_are_new(
    writer: LedgerWriter, pool: ConnectionPool
) -> None:
    first = events([f"e{i}" for i in range(100)])
    done = writer.commit(prepare(batch_of(first)), {0: None}, aggregation_of)
    assert done.new_events[0].rows() == first and done.duplicates == 0

    again = writer.commit(prepare(batch_of(first, start=100)), {0: 100}, aggregation_of)
    assert len(again.new_events[0]) == 0 and again.deltas[0] == [] and again.duplicates == 100

    mixed = events([f"e{i}" for i in range(90, 110)]) + events(["e105"])
    part = writer.commit(prepare(batch_of(mixed, start=200)), {0: 200}, aggregation_of)
    assert part.new_events[0].id == [f"e{i}" for i in range(100, 110)]
    assert part.duplicates == 11
    assert len(ledger_ids(pool)) == 110
    total = sum(v for (_c, _m, _b), (v, _n) in rollups(pool, 1).items())
    assert total == 2.5 * 110


@pytest.mark.integration
def test_a_batch_from_a_stale_position_is_fenced_and_writes_nothing(
    writer: LedgerWriter, pool: ConnectionPool
) -> None:
    writer.commit(prepare(batch_of(events(["a", "b"]))), {0: None}, aggregation_of)
    with pytest.raises(Fenced):  # another owner moved the offset from 0 to 2 meanwhile
        writer.commit(prepare(batch_of(events(["c", "d"]), start=0)), {0: 0}, aggregation_of)
    assert ledger_ids(pool) == {"a", "b"}
    assert writer.positions([0]) == {0: 2}


@pytest.mark.integration
def test_an_id_on_two_partitions_of_one_batch_is_counted_once(
    writer: LedgerWriter, pool: ConnectionPool
) -> None:
    # An identity is (tenant, id): the same id sent for two customers lands on two partitions;
    # the second copy is a duplicate whether or not the ledger held the first.
    a, b = events(["x", "y"], customer="c1"), events(["x"], customer="c2")
    batch = Batch(events={0: Events.of(a), 1: Events.of(b)}, ends={0: 2, 1: 1}, records=3)
    done = writer.commit(prepare(batch), {0: None, 1: None}, aggregation_of)
    assert done.new_events[0].id == ["x", "y"] and len(done.new_events[1]) == 0
    assert done.duplicates == 1
    assert sum(n for (_v, n) in rollups(pool, 1).values()) == 2

    again = Batch(events={0: Events.of(events(["z"])), 1: Events.of(b + b)}, ends={0: 3, 1: 3})
    done = writer.commit(prepare(again), {0: 2, 1: 1}, aggregation_of)
    assert done.new_events[0].id == ["z"] and len(done.new_events[1]) == 0
    assert done.duplicates == 2
    assert sum(n for (_v, n) in rollups(pool, 1).values()) == 3
