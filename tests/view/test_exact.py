"""Exact values through every reader of usage, on both views (memory and Redis): the oracle is
Python `Decimal` over the values sent, with a context far wider than any sum here.

Events go the aggregator's way (`Events` as decoded from Kafka, `to_deltas`), then into the
view and its archive (the rollups' memory twin), and are read back by period, by the last
minutes, from the archive, and against a limit equal to their exact sum."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.batch import to_deltas
from aggregator.decoding import Events
from meterline.catalog.model import Aggregation
from meterline.clock import FakeClock
from meterline.events import UsageEvent
from meterline.view.model import DAY_MS, MINUTE_MS
from tests.unit.value_strategies import rule_decimals
from tests.view.support import T0, RigFactory

PERIOD = (T0 - DAY_MS, T0 + DAY_MS)
MICRO = Decimal("0.000001")


def events(items: list[tuple[int, Decimal]], meter: str = "m") -> Events:
    """One event per (minute after T0, value), each value as the double Kafka carries."""
    return Events.of(
        UsageEvent(1, f"e{i}", "c1", meter, float(v), T0 + m * MINUTE_MS, T0)
        for i, (m, v) in enumerate(items)
    )


def oracle_sum(values: list[Decimal]) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return sum(values, Decimal(0))


def sums(make_rig: RigFactory, items: list[tuple[int, Decimal]]) -> list[Decimal]:
    """What each reader says the sum is."""
    rig = make_rig()
    rig.record(to_deltas(events(items), lambda _t, _m: Aggregation.SUM))
    view, now = rig.view, T0 + 30 * MINUTE_MS
    archived = rig.archive.fold_ranges(1, "c1", "m", Aggregation.SUM, [PERIOD])
    assert archived is not None
    return [
        view.usage(1, "c1", "m", Aggregation.SUM, *PERIOD),
        view.recent(1, "c1", "m", Aggregation.SUM, 31, now),
        archived[0],
        view.reserve(1, "c1", "m", "probe", Decimal(0), None, *PERIOD, now).used,
    ]


values_st = st.lists(st.tuples(st.integers(0, 29), rule_decimals()), min_size=1, max_size=40)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=values_st)
def test_every_reader_sums_exactly(make_rig: RigFactory, items: list[tuple[int, Decimal]]) -> None:
    expected = oracle_sum([v for _m, v in items])
    assert sums(make_rig, items) == [expected] * 4


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=values_st)
def test_a_limit_equal_to_the_exact_sum_is_full(
    make_rig: RigFactory, items: list[tuple[int, Decimal]]
) -> None:
    rig = make_rig()
    rig.record(to_deltas(events(items), lambda _t, _m: Aggregation.SUM))
    limit, now = oracle_sum([v for _m, v in items]), T0 + 30 * MINUTE_MS
    assert not rig.view.reserve(1, "c1", "m", "over", MICRO, limit, *PERIOD, now).granted
    assert rig.view.reserve(1, "c1", "m", "fits", MICRO, limit + MICRO, *PERIOD, now).granted


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=values_st)
def test_max_and_latest_are_the_exact_values_sent(
    make_rig: RigFactory, items: list[tuple[int, Decimal]]
) -> None:
    rig = make_rig()
    aggs = {"hi": Aggregation.MAX, "last": Aggregation.LATEST}
    for meter, agg in aggs.items():
        rig.record(to_deltas(events(items, meter), lambda _t, _m, a=agg: a))  # type: ignore[misc]
    latest = max(items, key=lambda it: (it[0], it[1]))[1]
    assert rig.view.usage(1, "c1", "hi", Aggregation.MAX, *PERIOD) == max(v for _m, v in items)
    assert rig.view.usage(1, "c1", "last", Aggregation.LATEST, *PERIOD) == latest


def test_ten_tenths_are_one_and_ten_1e15_and_3_keep_the_3(make_rig: RigFactory) -> None:
    assert sums(make_rig, [(0, Decimal("0.1"))] * 10) == [Decimal(1)] * 4
    big = [(m, Decimal(10**15)) for m in range(10)] + [(5, Decimal(3))]
    assert sums(make_rig, big) == [Decimal(10**16 + 3)] * 4


def test_a_limit_of_1_grants_ten_tenths_and_refuses_the_eleventh(
    make_rig: RigFactory, clock: FakeClock
) -> None:
    view, now = make_rig().view, clock.now_ms()
    tenth = Decimal("0.1")
    granted = [
        view.reserve(1, "c1", "m", f"e{i}", tenth, Decimal(1), *PERIOD, now) for i in range(11)
    ]
    assert [r.granted for r in granted] == [True] * 10 + [False]
    assert granted[-1].used == 1


@pytest.mark.parametrize("total", [Decimal("10000000000000003"), Decimal("9007199254740993.5")])
def test_reserve_compares_past_2_to_the_53(make_rig: RigFactory, total: Decimal) -> None:
    """Lua numbers are doubles: 2^53 + 1 would compare equal to 2^53."""
    rig = make_rig()
    whole, part = divmod(total, 10**15)
    items = [(m, Decimal(10**15)) for m in range(int(whole))] + [(20, part)]
    rig.record(to_deltas(events(items), lambda _t, _m: Aggregation.SUM))
    now = T0 + 30 * MINUTE_MS
    assert not rig.view.reserve(1, "c1", "m", "a", MICRO, total, *PERIOD, now).granted
    assert rig.view.reserve(1, "c1", "m", "b", MICRO, total + MICRO, *PERIOD, now).granted
    assert rig.view.usage(1, "c1", "m", Aggregation.SUM, *PERIOD) == total
