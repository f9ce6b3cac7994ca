"""`World.settle`: waits for a slow count that keeps moving, gives up on one that stalls."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from bench.reliability.world import Tenant, World


@dataclass
class Counts:
    """An observer whose counted total follows `values`, one per call, then stays put."""

    values: Iterator[int]
    last: int = 0

    def counted(self, tenant_id: int) -> int:
        self.last = next(self.values, self.last)
        return self.last


@dataclass
class Acked:
    acked_count: int


def _settle(values: list[int], acked: int, settle_s: float) -> float | None:
    world = World(cast(Any, None), cast(Any, None), cast(Any, Counts(iter(values))))
    world.settle_s = settle_s
    return world.settle(Tenant(1, "t", {}), cast(Any, Acked(acked)))


def test_a_count_that_keeps_moving_is_waited_for_past_settle_s() -> None:
    # Eight half-second polls of progress (4 s) with a stall window of 2 s: still settled.
    waited = _settle([100 * i for i in range(1, 9)], acked=800, settle_s=2.0)
    assert waited is not None and waited >= 3.0


def test_a_count_that_stands_still_short_of_the_acknowledged_events_gives_up() -> None:
    assert _settle([100, 200], acked=800, settle_s=1.5) is None
