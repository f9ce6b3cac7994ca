"""The ledger and its comparison with what the system counted (pure; no services)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.reliability.ledger import Ledger, Total, compare, totals


def _ledger(values: list[float]) -> Ledger:
    ledger = Ledger("t1-e", ["c0", "c1"], ["api_calls", "tokens"])
    for i, v in enumerate(values):
        ledger.new_event(i % 2, (i // 2) % 2, v, 1_700_000_000_000 + i)
    return ledger


def _counted(ledger: Ledger, numbers: list[int]) -> tuple[list[str], dict[tuple[str, str], Total]]:
    ids = [ledger.event_id(n) for n in numbers]
    return ids, totals((ledger.key(n), ledger.value(n)) for n in numbers)


def test_ids_round_trip_and_foreign_ids_are_unknown() -> None:
    ledger = _ledger([1, 2, 3])
    assert ledger.event_id(2) == "t1-e-000000000002"
    assert ledger.number("t1-e-000000000002") == 2
    assert ledger.number("t1-e-000000000009") is None
    assert ledger.number("t2-e-000000000001") is None
    assert ledger.event(1) == {
        "id": "t1-e-000000000001",
        "customer": "c1",
        "meter": "api_calls",
        "value": 2.0,
        "timestamp": 1_700_000_000_001,
    }


def test_acks_are_per_id_and_retries_do_not_count_twice() -> None:
    ledger = _ledger([1, 2, 3])
    ledger.record([0, 1], "503")
    ledger.record([0, 1], "202")
    ledger.record([0, 1], "202")
    assert ledger.acked_count == 2 and ledger.sends == 6
    assert ledger.outcomes == {"503": 1, "202": 2}
    assert ledger.expected() == {
        ("c0", "api_calls"): Total(1.0, 1),
        ("c1", "api_calls"): Total(2.0, 1),
    }


def test_exact_counting_is_ok() -> None:
    ledger = _ledger([1, 2, 3, 4])
    ledger.record([0, 1, 2, 3], "202")
    ids, rollups = _counted(ledger, [0, 1, 2, 3])
    verdict = compare(ledger, ids, rollups, {"redis": {k: t.value for k, t in rollups.items()}})
    assert verdict.ok
    assert (verdict.sent, verdict.acked, verdict.counted, verdict.lost, verdict.doubled) == (
        4,
        4,
        4,
        0,
        0,
    )


def test_an_acknowledged_event_missing_is_lost() -> None:
    ledger = _ledger([1, 2, 3])
    ledger.record([0, 1, 2], "202")
    ids, rollups = _counted(ledger, [0, 2])
    verdict = compare(ledger, ids, rollups)
    assert verdict.lost == 1 and not verdict.ok


def test_an_unacknowledged_event_counted_is_allowed() -> None:
    ledger = _ledger([1, 2])
    ledger.record([0], "202")
    ledger.record([1], "Timeout")
    ids, rollups = _counted(ledger, [0, 1])
    verdict = compare(ledger, ids, rollups)
    assert verdict.ok and verdict.counted_unacked == 1


def test_a_duplicate_ledger_row_is_doubled() -> None:
    ledger = _ledger([1, 2])
    ledger.record([0, 1], "202")
    ids, rollups = _counted(ledger, [0, 1])
    verdict = compare(ledger, [*ids, ids[0]], rollups)
    assert verdict.doubled == 1 and not verdict.ok


def test_rollups_above_the_ledger_rows_are_doubled() -> None:
    ledger = _ledger([5, 7])
    ledger.record([0, 1], "202")
    ids, rollups = _counted(ledger, [0, 1])
    rollups[("c0", "api_calls")] = Total(10.0, 2)
    verdict = compare(ledger, ids, rollups)
    assert verdict.doubled == 1
    assert verdict.mismatches == [
        "rollup ('c0', 'api_calls'): ledger rows Total(value=5.0, count=1), "
        "rollups Total(value=10.0, count=2)"
    ]


def test_ids_of_another_tenant_or_invalid_events_are_unknown() -> None:
    ledger = _ledger([1])
    ledger.record([0], "202")
    ids, rollups = _counted(ledger, [0])
    verdict = compare(ledger, [*ids, "fz1-0", "t2-e-000000000000"], rollups)
    assert verdict.unknown == 2 and not verdict.ok


def test_a_view_that_differs_from_the_rollups_is_a_mismatch() -> None:
    ledger = _ledger([1, 2])
    ledger.record([0, 1], "202")
    ids, rollups = _counted(ledger, [0, 1])
    view = {("c0", "api_calls"): 1.0}
    verdict = compare(ledger, ids, rollups, {"redis": view})
    assert verdict.mismatches == ["redis ('c1', 'api_calls'): rollups 2, redis 0"]


@given(
    values=st.lists(st.integers(1, 10), min_size=1, max_size=60),
    acked=st.sets(st.integers(0, 59)),
    counted=st.sets(st.integers(0, 59)),
    repeats=st.lists(st.integers(0, 59), max_size=5),
)
def test_lost_and_doubled_match_set_arithmetic(
    values: list[int], acked: set[int], counted: set[int], repeats: list[int]
) -> None:
    ledger = _ledger([float(v) for v in values])
    n = len(values)
    acked, counted = {a for a in acked if a < n}, {c for c in counted if c < n}
    repeats = [r for r in repeats if r in counted]
    ledger.record(sorted(acked), "202")
    ids, rollups = _counted(ledger, sorted(counted))
    verdict = compare(ledger, ids + [ledger.event_id(r) for r in repeats], rollups)
    assert verdict.lost == len(acked - counted)
    assert verdict.doubled == len(repeats)
    assert verdict.counted == len(counted)
    assert verdict.counted_unacked == len(counted - acked)
    assert verdict.ok == (not (acked - counted) and not repeats)


def test_a_view_is_compared_only_on_its_meters() -> None:
    ledger = _ledger([1, 2, 3, 4])
    ledger.record([0, 1, 2, 3], "202")
    ids, rollups = _counted(ledger, [0, 1, 2, 3])
    stripe = {k: t.value for k, t in rollups.items() if k[1] == "api_calls"}
    assert compare(ledger, ids, rollups, {"stripe": stripe}, {"stripe": ["api_calls"]}).ok
    assert not compare(ledger, ids, rollups, {"stripe": stripe}).ok
