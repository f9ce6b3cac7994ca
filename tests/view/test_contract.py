"""One suite, run against both view implementations (memory, and Redis through the fixtures)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterline.catalog.aggregation import fold, merge
from meterline.catalog.model import Aggregation
from meterline.clock import FakeClock, from_ms, to_ms
from meterline.entitlements.periods import add_months
from meterline.view import (
    ApplyOutcome,
    Delta,
    Gate,
    PendingReservation,
    Reservation,
    ReservationKey,
    ReserveAsk,
    SyncedView,
    ViewNotReady,
)
from meterline.view.model import DAY_MS, HOUR_MS, MINUTE_MS, floor_to
from tests.view.support import T0, Rig, RigFactory

NOW = T0 + 30 * MINUTE_MS


def delta(minute_ms: int, value: float, agg: Aggregation = Aggregation.SUM, **kw: object) -> Delta:
    fields: dict[str, object] = dict(tenant_id=1, customer="c1", meter="m", aggregation=agg)
    fields.update(kw)
    latest = int(fields.pop("latest_ms", minute_ms))  # type: ignore[call-overload]
    return Delta(minute_ms=minute_ms, value=value, count=1, latest_ms=latest, **fields)  # type: ignore[arg-type]


def test_sum_over_hours_days_and_months(view: SyncedView) -> None:
    view.apply([delta(T0, 2), delta(T0 + 2 * HOUR_MS, 3), delta(T0 + 3 * DAY_MS, 5)], [])
    u = lambda a, b: view.usage(1, "c1", "m", Aggregation.SUM, a, b)  # noqa: E731
    assert u(T0, T0 + HOUR_MS) == 2
    assert u(T0, T0 + 3 * HOUR_MS) == 5
    assert u(T0 - 40 * DAY_MS, T0 + 40 * DAY_MS) == 10
    assert u(T0 + 59 * MINUTE_MS, T0 + 61 * MINUTE_MS) == 0
    assert u(T0 + 59_999, T0 + 61 * MINUTE_MS) == 2  # a boundary inside a minute: its start
    assert u(T0 - 2 * MINUTE_MS, T0 + 59_999) == 0
    assert u(T0 + HOUR_MS, T0 + 2 * HOUR_MS) == 0
    assert view.usage(1, "c2", "m", Aggregation.SUM, T0, T0 + DAY_MS) == 0


def test_max_latest_and_count(view: SyncedView) -> None:
    mx, lt = Aggregation.MAX, Aggregation.LATEST
    view.apply([delta(T0, 4, mx, meter="x"), delta(T0 + HOUR_MS, 9, mx, meter="x")], [])
    view.apply([delta(T0, 1, mx, meter="x")], [])
    view.apply([delta(T0, 7, lt, meter="l", latest_ms=T0 + 5)], [])
    view.apply([delta(T0, 3, lt, meter="l", latest_ms=T0 + 1)], [])
    view.apply([delta(T0 + DAY_MS, 6, Aggregation.COUNT, meter="c")], [])
    assert view.usage(1, "c1", "x", mx, T0, T0 + HOUR_MS) == 4
    assert view.usage(1, "c1", "x", mx, T0, T0 + DAY_MS) == 9
    assert view.usage(1, "c1", "l", lt, T0, T0 + DAY_MS) == 7
    assert view.usage(1, "c1", "c", Aggregation.COUNT, T0, T0 + 2 * DAY_MS) == 6


def test_customers_and_meters_with_any_characters(view: SyncedView, clock: FakeClock) -> None:
    """The Redis view packs a batch's deltas as JSON: names must survive it byte for byte."""
    names = ['quo"te', "back\\slash", "ünïcødé ✓", "sp ace|pipe", "[1,2]", "null"]
    now_minute = floor_to(clock.now_ms(), MINUTE_MS)
    view.apply([delta(now_minute, 1.5, customer=n, meter=n) for n in names], [])
    view.apply([delta(now_minute, 0.25, customer=n, meter=n) for n in names], [])
    for n in names:
        assert view.usage(1, n, n, Aggregation.SUM, T0, T0 + DAY_MS) == 1.75
        assert view.recent(1, n, n, Aggregation.SUM, 2, clock.now_ms()) == 1.75


def test_recent_minutes(view: SyncedView, clock: FakeClock) -> None:
    now = clock.now_ms()
    minute = floor_to(now, MINUTE_MS)
    view.apply(
        [delta(minute, 1), delta(minute - 4 * MINUTE_MS, 2), delta(minute - 9 * 60_000, 4)], []
    )
    assert view.recent(1, "c1", "m", Aggregation.SUM, 1, now) == 1
    assert view.recent(1, "c1", "m", Aggregation.SUM, 5, now) == 3
    assert view.recent(1, "c1", "m", Aggregation.SUM, 10, now) == 7
    assert view.recent(1, "c1", "m", Aggregation.MAX, 10, now) == 4


def test_reserve_grants_up_to_the_limit(view: SyncedView) -> None:
    view.apply([delta(T0, 6)], [])
    args = (T0, T0 + DAY_MS, NOW)
    first = view.reserve(1, "c1", "m", "e1", 3, 10, *args)
    assert (first.granted, first.used, first.pending) == (True, 6, 0)
    refused = view.reserve(1, "c1", "m", "e2", 2, 10, *args)
    assert (refused.granted, refused.used, refused.pending) == (False, 9, 3)
    again = view.reserve(1, "c1", "m", "e1", 3, 10, *args)
    assert again.granted and again.pending == 3
    assert view.reserve(1, "c1", "m", "e3", 1, 10, *args).granted
    assert view.reserve(1, "c1", "m", "e4", 1e9, None, *args).granted


def test_reserve_many_decides_in_order_as_one_by_one(view: SyncedView) -> None:
    view.apply([delta(T0, 6)], [])
    assert view.reserve(1, "c9", "m", "p", 1, None, T0, T0 + DAY_MS, NOW).granted  # loads RESERVE
    ask = lambda e, amount, limit, customer="c1": ReserveAsk(  # noqa: E731
        1, customer, "m", e, Decimal(amount), limit, T0, T0 + DAY_MS, NOW
    )
    held = view.reserve_many(
        [
            ask("e1", 3, 10),
            ask("e2", 2, 10),
            ask("e1", 3, 10),
            ask("e3", 1, 10),
            ask("x", 5, 5, "c2"),
        ]
    )
    assert all(isinstance(r, Reservation) for r in held)
    outcomes = [(r.granted, r.used, r.pending) for r in held if isinstance(r, Reservation)]
    assert outcomes == [(True, 6, 0), (False, 9, 3), (True, 9, 3), (True, 9, 3), (True, 0, 0)]
    assert not view.reserve(1, "c1", "m", "e4", 1, 10, T0, T0 + DAY_MS, NOW).granted
    assert view.reserve_many([]) == []


def test_reserve_many_answers_each_ask_not_ready_alone(rig: Rig) -> None:
    asks = [ReserveAsk(1, c, "m", "e1", Decimal(1), Decimal(5), T0, T0 + DAY_MS, NOW) for c in "ab"]
    rig.flush()
    held = rig.view.reserve_many(asks)
    assert [type(r) for r in held] == [ViewNotReady, ViewNotReady]


def test_apply_swaps_pending_for_usage_atomically(view: SyncedView) -> None:
    args = (T0, T0 + DAY_MS, NOW)
    assert view.reserve(1, "c1", "m", "e1", 4, 5, *args).granted
    view.apply([delta(T0 + MINUTE_MS, 4)], [ReservationKey(1, "c1", "m", "e1")])
    r = view.reserve(1, "c1", "m", "e2", 1, 5, *args)
    assert (r.granted, r.used, r.pending) == (True, 4, 0)
    assert view.reserve(1, "c1", "m", "e1", 4, 5, *args).granted  # counted: no new pending
    assert not view.reserve(1, "c1", "m", "e3", 1, 5, *args).granted


def test_release_and_no_lapse(view: SyncedView, clock: FakeClock) -> None:
    args = (T0, T0 + DAY_MS)
    assert view.reserve(1, "c1", "m", "e1", 5, 5, *args, NOW).granted
    assert not view.reserve(1, "c1", "m", "e2", 5, 5, *args, NOW).granted
    view.release(1, "c1", "m", "e1")
    assert view.reserve(1, "c1", "m", "e2", 5, 5, *args, NOW).granted
    clock.advance(2 * 3600)
    refused = view.reserve(1, "c1", "m", "e3", 5, 5, *args, NOW)
    assert (refused.granted, refused.pending) == (False, 5)


def test_a_reservation_counts_in_the_period_of_its_event(view: SyncedView) -> None:
    before = view.reserve(1, "c1", "m", "e1", 5, None, T0 - DAY_MS, T0, T0 - MINUTE_MS)
    assert before.granted and before.at_ms == T0 - MINUTE_MS
    assert view.reserve(1, "c1", "m", "e2", 1, 1, T0, T0 + DAY_MS, NOW).pending == 0
    clamped = view.reserve(1, "c1", "m", "e3", 1, None, T0, T0 + DAY_MS, T0 - MINUTE_MS)
    assert clamped.at_ms == T0


def test_restored_reservations_count_and_never_replace(view: SyncedView) -> None:
    key = ReservationKey(1, "c1", "m", "e1")
    assert view.reserve(1, "c1", "m", "e1", 2, None, T0, T0 + DAY_MS, NOW).granted
    view.restore_reservations(
        [
            PendingReservation(key, 9, NOW),
            PendingReservation(ReservationKey(1, "c1", "m", "e2"), 3, NOW),
        ]
    )
    r = view.reserve(1, "c1", "m", "e3", 1, 5, T0, T0 + DAY_MS, NOW)
    assert (r.granted, r.pending) == (False, 5)
    assert view.held_ids(1, "c1", "m") == {"e1", "e2"} and view.held_ids(1, "c2", "m") == set()


def test_gated_apply(view: SyncedView) -> None:
    d = [delta(T0, 1)]
    assert view.apply_gated(Gate("s", None, 10), d, []) is ApplyOutcome.APPLIED
    assert view.apply_gated(Gate("s", 0, 10), d, []) is ApplyOutcome.SKIPPED
    assert view.apply_gated(Gate("s", 12, 20), d, []) is ApplyOutcome.GAP
    assert view.apply_gated(Gate("s", 10, 20), d, []) is ApplyOutcome.APPLIED
    assert view.apply_gated(Gate("t", 5, 20), d, []) is ApplyOutcome.GAP
    assert view.watermarks() == {"s": 20}
    assert view.usage(1, "c1", "m", Aggregation.SUM, T0, T0 + HOUR_MS) == 2


def test_rebuild_cycle(view: SyncedView) -> None:
    view.apply([delta(T0, 1)], [])
    assert view.reserve(1, "c1", "m", "e1", 1, None, T0, T0 + DAY_MS, NOW).granted
    token = view.begin_rebuild(30)
    assert token is not None and view.begin_rebuild(30) is None
    assert view.watermarks() is None
    assert view.apply_gated(Gate("s", None, 1), [delta(T0, 1)], []) is ApplyOutcome.REBUILDING
    view.load(token, [delta(T0, 5)])
    assert view.finish_rebuild(token, {"s": 3})
    assert view.watermarks() == {"s": 3}
    assert view.usage(1, "c1", "m", Aggregation.SUM, T0, T0 + HOUR_MS) == 5
    assert view.pending_reservations() == [ReservationKey(1, "c1", "m", "e1")]
    view.remove_reservations(view.pending_reservations())
    assert view.pending_reservations() == []


minutes = st.integers(0, 60 * 24 * 45).map(lambda m: T0 - 20 * DAY_MS + m * MINUTE_MS)
instants = st.integers(0, 86_400 * 45).map(lambda s: T0 - 20 * DAY_MS + s * 1000)
deltas_st = st.lists(
    st.tuples(minutes, st.integers(0, 1000), st.integers(0, 59_999)), min_size=1, max_size=25
)


@pytest.mark.parametrize("agg", list(Aggregation))
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=deltas_st, a=instants, b=instants)
def test_usage_matches_a_fold_of_minute_buckets(
    make_rig: RigFactory, agg: Aggregation, items: list[tuple[int, int, int]], a: int, b: int
) -> None:
    rig = make_rig()
    ds = [delta(m, float(v), agg, latest_ms=m + off) for m, v, off in items]
    rig.record(ds)
    lo, hi = min(a, b) // MINUTE_MS * MINUTE_MS, max(a, b) // MINUTE_MS * MINUTE_MS
    buckets: dict[int, tuple[float, int]] = {}
    for d in ds:
        buckets[d.minute_ms] = merge(agg, buckets.get(d.minute_ms), (d.value, d.latest_ms))
    expected = fold(agg, (v for m, v in buckets.items() if lo <= m < hi))
    assert rig.view.usage(1, "c1", "m", agg, min(a, b), max(a, b)) == pytest.approx(expected)


def _month_later(ms: int, months: int = 1) -> int:
    return to_ms(add_months(from_ms(ms), months))


def _consume(rig: Rig, clock: FakeClock, event_id: str, limit: float, start: int, end: int) -> bool:
    """Reserve one unit now and, when granted, count its event at the instant it was given."""
    r = rig.view.reserve(1, "c1", "m", event_id, 1, limit, start, end, clock.now_ms())
    if r.granted:
        counted = [ReservationKey(1, "c1", "m", event_id)]
        rig.record([delta(floor_to(r.at_ms, MINUTE_MS), 1, latest_ms=r.at_ms)], counted)
    return r.granted


def test_a_ragged_period_counts_its_first_and_last_partial_hours(
    rig: Rig, clock: FakeClock
) -> None:
    """A billing period from 05:12:30 to 05:12:30 a month later, as Stripe starts them."""
    start = T0 + 3 * HOUR_MS + 12 * MINUTE_MS + 30_000
    end = _month_later(start)
    clock._ms = start + 5 * MINUTE_MS
    assert _consume(rig, clock, "e1", 3, start, end) and _consume(rig, clock, "e2", 3, start, end)
    clock._ms = end - 10 * MINUTE_MS
    assert rig.view.usage(1, "c1", "m", Aggregation.SUM, start, end) == 2
    assert rig.view.reserve(1, "c1", "m", "e3", 1, 3, start, end, clock.now_ms()).granted
    assert not rig.view.reserve(1, "c1", "m", "e4", 1, 3, start, end, clock.now_ms()).granted
    clock._ms = end - 10_000
    last = rig.view.reserve(1, "c1", "m", "e5", 1, 3, start, end, clock.now_ms())
    assert not last.granted and last.used == 3
    clock._ms = end + 5_000
    nxt = rig.view.reserve(1, "c1", "m", "e6", 1, 3, end, _month_later(end), clock.now_ms())
    assert nxt.granted and nxt.used == 0


def test_the_minute_holding_a_boundary_belongs_to_the_later_period(
    rig: Rig, clock: FakeClock
) -> None:
    start = T0 + 3 * HOUR_MS + 12 * MINUTE_MS + 30_000
    end = _month_later(start)
    clock._ms = end - 10_000
    granted = rig.view.reserve(1, "c1", "m", "e1", 1, 1, start, end, clock.now_ms())
    assert granted.granted and granted.at_ms == floor_to(end, MINUTE_MS) - 1
    rig.record([delta(floor_to(end, MINUTE_MS), 7)])
    assert rig.view.usage(1, "c1", "m", Aggregation.SUM, start, end) == 0
    assert rig.view.usage(1, "c1", "m", Aggregation.SUM, end, _month_later(end)) == 7
    clock._ms = end + 1_000
    later = rig.view.reserve(1, "c1", "m", "e2", 1, 10, end, _month_later(end), clock.now_ms())
    assert later.used == 7 and later.at_ms == end + 1_000


def test_a_yearly_period_counts_its_first_months(rig: Rig, clock: FakeClock) -> None:
    now = clock.now_ms()
    start = _month_later(now, -11) - 3 * DAY_MS + 17 * MINUTE_MS + 45_000
    end = _month_later(start, 12)
    first_minute = floor_to(start, MINUTE_MS)
    rig.record([delta(first_minute - MINUTE_MS, 100), delta(first_minute, 2)])
    rig.record([delta(start + DAY_MS, 5), delta(_month_later(start, 4), 1)])
    rig.record([delta(floor_to(now, MINUTE_MS), 1)])
    assert rig.view.usage(1, "c1", "m", Aggregation.SUM, start, end) == 9
    assert not rig.view.reserve(1, "c1", "m", "e1", 2, 10, start, end, clock.now_ms()).granted
    assert rig.view.reserve(1, "c1", "m", "e2", 1, 10, start, end, clock.now_ms()).granted


def test_a_late_event_in_an_archived_part_counts_at_once(rig: Rig, clock: FakeClock) -> None:
    start = _month_later(clock.now_ms(), -1) + 7 * MINUTE_MS
    end = _month_later(start)
    rig.record([delta(floor_to(start, MINUTE_MS) + MINUTE_MS, 4)])
    assert rig.view.reserve(1, "c1", "m", "e1", 1, 6, start, end, clock.now_ms()).used == 4
    rig.record([delta(floor_to(start, MINUTE_MS) + 2 * MINUTE_MS, 1)])
    rig.record([delta(floor_to(start + 3 * DAY_MS, MINUTE_MS), 1)])
    refused = rig.view.reserve(1, "c1", "m", "e2", 1, 6, start, end, clock.now_ms())
    assert (refused.granted, refused.used) == (False, 7)


def test_reserve_is_refused_while_the_view_is_not_ready(rig: Rig, clock: FakeClock) -> None:
    args = (T0, T0 + DAY_MS, NOW)
    assert rig.view.reserve(1, "c1", "m", "e1", 1, 5, *args).granted
    rig.flush()
    with pytest.raises(ViewNotReady):
        rig.view.reserve(1, "c1", "m", "e2", 1, 5, *args)
    token = rig.view.begin_rebuild(30)
    assert token is not None
    with pytest.raises(ViewNotReady) as refused:
        rig.view.reserve(1, "c1", "m", "e3", 1, None, *args)
    assert refused.value.status == 503
    assert rig.view.finish_rebuild(token, {})
    assert rig.view.reserve(1, "c1", "m", "e4", 1, 5, *args).granted


def test_a_view_not_ready_decides_against_the_usage_counted_elsewhere(rig: Rig) -> None:
    args = (T0, T0 + DAY_MS, NOW)
    rig.record([delta(T0, 2)])
    assert rig.view.reserve(1, "c1", "m", "e1", 1, 10, *args).granted
    rig.flush()
    refused = rig.view.reserve(1, "c1", "m", "e2", 6, 10, *args, counted=5)
    assert (refused.granted, refused.used, refused.pending) == (False, 5, 0)
    assert rig.view.reserve(1, "c1", "m", "e3", 5, 10, *args, counted=5).granted
    token = rig.view.begin_rebuild(30)
    assert token is not None
    rig.view.load(token, [delta(T0, 2)])
    # During the rebuild `counted` stands for the usage: the part already loaded is not added.
    partial = rig.view.reserve(1, "c1", "m", "e4", 2, 10, *args, counted=2)
    assert (partial.granted, partial.used, partial.pending) == (True, 7, 5)
    assert rig.view.finish_rebuild(token, {})
    ready = rig.view.reserve(1, "c1", "m", "e5", 1, 10, *args, counted=100)
    assert (ready.granted, ready.used) == (True, 9)  # ready: the view, not `counted`
