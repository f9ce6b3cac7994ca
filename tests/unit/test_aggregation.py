"""The aggregation table: what it says for each aggregation, and that `merge` is associative
and commutative and agrees with `fold` (Hypothesis). The stores are held to it by their own
contract tests (tests/view/test_contract.py, tests/usage/test_contract.py, the aggregator's
fold in tests/aggregator/test_batch.py)."""

from __future__ import annotations

import random
from decimal import Decimal
from functools import reduce

from hypothesis import given
from hypothesis import strategies as st

from meterline.catalog.aggregation import RULES, Combine, across, fold, merge
from meterline.catalog.model import Aggregation

D = Decimal
timed = st.tuples(st.integers(0, 10**6).map(D), st.integers(0, 5))


def test_every_aggregation_has_its_rule() -> None:
    assert set(RULES) == set(Aggregation)
    assert [a for a, r in RULES.items() if r.counts_events] == [Aggregation.COUNT]
    assert {a: r.over_time for a, r in RULES.items()} == {
        Aggregation.SUM: Combine.ADD,
        Aggregation.COUNT: Combine.ADD,
        Aggregation.MAX: Combine.MAX,
        Aggregation.LATEST: Combine.LATEST,
    }


def test_the_table_by_example() -> None:
    buckets = [(D(3), 10), (D(5), 20), (D(4), 20), (D(1), 5)]
    assert fold(Aggregation.SUM, buckets) == fold(Aggregation.COUNT, buckets) == D(13)
    assert fold(Aggregation.MAX, buckets) == D(5)
    assert fold(Aggregation.LATEST, buckets) == D(5)  # a tie in time: the larger
    assert fold(Aggregation.LATEST, []) == D(0)
    assert across(Aggregation.LATEST, D(2), D(3)) == D(5)  # each customer's latest, added
    assert across(Aggregation.MAX, D(2), D(3)) == D(3)
    assert across(Aggregation.SUM, None, D(3)) == D(3)


@given(st.sampled_from(list(Aggregation)), st.lists(timed, min_size=1, max_size=6), st.randoms())
def test_merging_in_any_order_gives_the_fold(
    aggregation: Aggregation, items: list[tuple[Decimal, int]], rnd: random.Random
) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    merged = reduce(lambda old, new: merge(aggregation, old, new), shuffled, None)
    assert merged is not None
    assert merged[0] == fold(aggregation, items)
    assert merged[1] == max(t for _, t in items)
