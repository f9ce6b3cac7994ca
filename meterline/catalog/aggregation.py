"""How each aggregation combines usage: the one table every store and reader follows.

| aggregation | an event adds | a series' buckets over time | customers into a total |
|---|---|---|---|
| `sum` | its value | added | added |
| `count` | 1 | added | added |
| `max` | its value | the largest | the largest |
| `latest` | its value | the latest event's (ties: the larger) | added (each one's latest) |

`RULES` holds that table. Each store writes it in its own terms, mapping from `Combine` (never
from the aggregation names): the aggregator's fold per minute in millionths
(aggregator/batch.py) and its rollup upsert (aggregator/ledger.py), the Redis view's scripts
(meterline/view/redis_view.py), the Postgres usage queries (meterline/usage/postgres.py), the
reporter's slots (reporter/rollups.py). `fold`, `merge` and `across` are the table in exact
decimals: the in-memory stores use them, and the tests hold the others to them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from meterline.catalog.model import Aggregation
from meterline.values import exact_sum


class Combine(enum.Enum):
    """How two amounts of one kind become one."""

    ADD = "add"
    MAX = "max"
    LATEST = "latest"
    """The amount with the latest time; on a tie, the larger amount."""


@dataclass(frozen=True, slots=True)
class Rule:
    counts_events: bool
    """An event adds 1 whatever its value (else it adds its value)."""
    over_time: Combine
    """How one customer's buckets of one meter combine."""
    across_customers: Combine
    """How customers' values of one meter combine into a total."""


RULES: Mapping[Aggregation, Rule] = MappingProxyType(
    {
        Aggregation.SUM: Rule(False, Combine.ADD, Combine.ADD),
        Aggregation.COUNT: Rule(True, Combine.ADD, Combine.ADD),
        Aggregation.MAX: Rule(False, Combine.MAX, Combine.MAX),
        Aggregation.LATEST: Rule(False, Combine.LATEST, Combine.ADD),
    }
)

Timed = tuple[Decimal, int]
"""An amount and the time (epoch ms) of the latest event in it."""


def fold(aggregation: Aggregation, values: Iterable[Timed]) -> Decimal:
    """Fold the (amount, latest_ms) of disjoint buckets of one series into one amount; 0 when
    there are none."""
    items = list(values)
    if not items:
        return Decimal(0)
    how = RULES[aggregation].over_time
    if how is Combine.MAX:
        return max(v for v, _ in items)
    if how is Combine.LATEST:
        return max(items, key=_latest)[0]
    return exact_sum(v for v, _ in items)


def merge(aggregation: Aggregation, old: Timed | None, new: Timed) -> Timed:
    """Merge one bucket's (amount, latest_ms) with a delta's; associative and commutative."""
    if old is None:
        return new
    how = RULES[aggregation].over_time
    if how is Combine.MAX:
        return max(old[0], new[0]), max(old[1], new[1])
    if how is Combine.LATEST:
        return max(old, new, key=_latest)
    return exact_sum((old[0], new[0])), max(old[1], new[1])


def across(aggregation: Aggregation, total: Decimal | None, value: Decimal) -> Decimal:
    """A total over customers with one more customer's `value` in it."""
    if total is None:
        return value
    if RULES[aggregation].across_customers is Combine.MAX:
        return max(total, value)
    return exact_sum((total, value))


def _latest(item: Timed) -> tuple[int, Decimal]:
    return item[1], item[0]
