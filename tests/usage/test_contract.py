"""One suite for both usage stores: Postgres (real, per-test database) and memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import ConnectionPool

from meterline.catalog.model import Aggregation
from meterline.clock import to_ms
from meterline.errors import ValidationFailed
from meterline.postgres import open_pool
from meterline.usage import MemoryUsageQuery, UsageQuery, UsageStore

T = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
Add = Callable[[str, str, datetime, float, int, datetime], None]


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[UsageStore, Add]]:
    if request.param == "memory":
        mem = MemoryUsageQuery()

        def add_mem(c: str, m: str, minute: datetime, v: float, n: int, ts: datetime) -> None:
            agg = Aggregation.LATEST if m == "seats" else Aggregation.SUM
            mem.add(1, c, m, agg, minute, v, n, to_ms(ts))

        yield mem, add_mem
        return
    pool: ConnectionPool = open_pool(request.getfixturevalue("pg_conninfo"), max_size=2)

    def add_pg(c: str, m: str, minute: datetime, v: float, n: int, ts: datetime) -> None:
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO usage_rollups_minute VALUES (1, %s, %s, %s, %s, %s, %s)",
                (c, m, minute, v, n, ts),
            )

    yield UsageQuery(pool), add_pg
    pool.close()


def test_hour_series_is_dense_and_totals(store: tuple[UsageStore, Add]) -> None:
    s, add = store
    add("a", "calls", T, 3, 2, T)
    add("a", "calls", T + timedelta(minutes=5), 4, 1, T)
    add("a", "calls", T + timedelta(hours=2, minutes=1), 5, 5, T)
    add("b", "calls", T, 100, 1, T)
    out = s.series(1, "a", "calls", Aggregation.SUM, T, T + timedelta(hours=3), "hour")
    doc = out.as_dict()
    assert doc["customer"] == "a" and doc["window"] == "hour" and doc["total"] == 12
    assert [(p["value"], p["count"]) for p in doc["series"]] == [(7, 3), (0, 0), (5, 5)]
    assert doc["series"][0]["start"] == "2026-11-20T10:00:00Z"
    assert doc["series"][0]["end"] == "2026-11-20T11:00:00Z"
    tenant = s.series(1, None, "calls", Aggregation.SUM, T, T + timedelta(days=1), "day")
    assert tenant.total == 112 and len(tenant.points) == 2 and tenant.points[0].count == 9


def test_range_is_widened_to_whole_windows(store: tuple[UsageStore, Add]) -> None:
    s, add = store
    add("a", "calls", T + timedelta(minutes=59), 1, 1, T)
    out = s.series(
        1,
        "a",
        "calls",
        Aggregation.SUM,
        T + timedelta(minutes=30),
        T + timedelta(minutes=31),
        "hour",
    )
    assert out.total == 1 and len(out.points) == 1


def test_latest_is_per_customer_then_summed(store: tuple[UsageStore, Add]) -> None:
    s, add = store
    add("a", "seats", T, 5, 1, T + timedelta(seconds=10))
    add("a", "seats", T + timedelta(minutes=1), 3, 1, T + timedelta(minutes=1, seconds=1))
    add("b", "seats", T, 7, 1, T)
    one = s.series(1, "a", "seats", Aggregation.LATEST, T, T + timedelta(hours=1), "hour")
    assert one.total == 3
    everyone = s.series(1, None, "seats", Aggregation.LATEST, T, T + timedelta(hours=1), "hour")
    assert everyone.total == 10 and everyone.points[0].value == 10


def test_bad_input_is_a_validation_error(store: tuple[UsageStore, Add]) -> None:
    s, _ = store
    with pytest.raises(ValidationFailed):
        s.series(1, "a", "calls", Aggregation.SUM, T, T, "hour")
    with pytest.raises(ValidationFailed):
        s.series(1, "a", "calls", Aggregation.SUM, T, T + timedelta(days=1), "week")
    with pytest.raises(ValidationFailed):
        s.series(1, "a", "calls", Aggregation.SUM, T, T + timedelta(days=365), "minute")


def test_period_value_counts_the_minutes_from_the_start_s_to_the_end_s(
    store: tuple[UsageStore, Add],
) -> None:
    """The rule every reader shares: a boundary inside a minute moves to that minute's start."""
    s, add = store
    start, end = (
        T + timedelta(minutes=12, seconds=30),
        T + timedelta(days=30, minutes=12, seconds=30),
    )
    add("a", "calls", T + timedelta(minutes=11), 100, 1, T)
    add("a", "calls", T + timedelta(minutes=12), 2, 1, T)
    add("a", "calls", T + timedelta(days=30, minutes=11), 3, 1, T)
    add("a", "calls", T + timedelta(days=30, minutes=12), 400, 1, T)
    assert s.period_value(1, "a", "calls", Aggregation.SUM, to_ms(start), to_ms(end)) == 5
    assert s.period_value(1, "b", "calls", Aggregation.SUM, to_ms(start), to_ms(end)) == 0


def test_fold_ranges_over_several_ranges(store: tuple[UsageStore, Add]) -> None:
    s, add = store
    for minute, value in ((0, 5), (1, 7), (3, 1), (10, 2)):
        stamp = T + timedelta(minutes=minute, seconds=minute)
        add("a", "seats", T + timedelta(minutes=minute), value, 1, stamp)
    ms = lambda m: to_ms(T + timedelta(minutes=m))  # noqa: E731
    ranges = [(ms(0), ms(2)), (ms(10), ms(11))]
    assert s.fold_ranges(1, "a", "seats", Aggregation.LATEST, ranges) == (2, ms(10) + 10_000)
    assert s.fold_ranges(1, "a", "seats", Aggregation.MAX, ranges) == (7, ms(10) + 10_000)
    assert s.fold_ranges(1, "a", "seats", Aggregation.SUM, ranges) == (14, ms(10) + 10_000)
    assert s.fold_ranges(1, "a", "seats", Aggregation.SUM, [(ms(4), ms(10))]) is None
