"""A seeded model of limits against both views, checked after every step by an oracle.

Each run draws a period of a week, a month or a year that starts and ends at a random second,
then a random sequence of steps: the clock moves (often to the period's last minutes),
consumes reserve against a blocking limit (new ids and retries), granted reservations are
counted at the instant they were attributed to or released, and ingested events land anywhere
from before the period's start to now. The oracle is plain Python over the list of events and
reservations; it shares no code with `meterline.view` and restates the period rule itself: an
instant counts in a period when its minute is at or after the minute of the start and before
the minute of the end. Runs: METERLINE_MODEL_RUNS seeds of METERLINE_MODEL_STEPS steps each
(a reduced 3 x 40 by default; the reliability run sets more).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from meterline.catalog.model import Aggregation
from meterline.clock import FakeClock
from meterline.view import Delta, ReservationKey
from tests.view.support import Rig, RigFactory

RUNS = int(os.environ.get("METERLINE_MODEL_RUNS", "3"))
STEPS = int(os.environ.get("METERLINE_MODEL_STEPS", "40"))
DAY_S = 86_400


def _months_later(ms: int, months: int) -> int:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    index = when.year * 12 + when.month - 1 + months
    year, month = divmod(index, 12)
    last = [31, 29 if year % 4 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month]
    moved = when.replace(year=year, month=month + 1, day=min(when.day, last))
    return int(moved.timestamp() * 1000)


@dataclass
class Oracle:
    """What the view must say, from the events and reservations alone."""

    start: int
    end: int
    limit: int
    events: list[tuple[int, int]] = field(default_factory=list)  # (instant ms, value)
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (amount, at)
    counted: set[str] = field(default_factory=set)
    granted: list[tuple[int, int]] = field(default_factory=list)  # (amount, at), not released

    def inside(self, ms: int) -> bool:
        return self.start // 60_000 <= ms // 60_000 < self.end // 60_000

    def attributed(self, now: int) -> int:
        first, last = self.start // 60_000 * 60_000, self.end // 60_000 * 60_000 - 1
        return min(max(now, first), last)

    def used(self) -> int:
        return sum(v for t, v in self.events if self.inside(t))

    def held(self) -> int:
        return sum(a for a, at in self.pending.values() if self.inside(at))

    def granted_in_period(self) -> int:
        return sum(a for a, at in self.granted if self.inside(at))


@dataclass
class Run:
    rig: Rig
    clock: FakeClock
    oracle: Oracle
    rng: random.Random
    next_id: int = 0

    def step(self) -> None:
        action = self.rng.choices(
            [self.tick, self.reserve, self.count, self.release, self.ingest],
            weights=[3, 5, 3, 1, 2],
        )[0]
        action()
        self.check()

    def tick(self) -> None:
        o, now = self.oracle, self.clock.now_ms()
        choice = self.rng.random()
        if choice < 0.5:
            target = now + self.rng.randint(0, 180_000)
        elif choice < 0.8:
            target = now + self.rng.randint(0, 6 * 3_600_000)
        else:
            target = o.end - self.rng.randint(1, 15 * 60_000)
        self.clock._ms = max(now, min(target, o.end - 1))

    def reserve(self) -> None:
        o = self.oracle
        if o.pending and self.rng.random() < 0.2:
            event_id = self.rng.choice(sorted(o.pending))
        else:
            self.next_id += 1
            event_id = f"e{self.next_id}"
        amount = self.rng.randint(1, 5)
        before = o.used() + o.held()
        got = self.rig.view.reserve(
            1, "c", "m", event_id, amount, o.limit, o.start, o.end, self.clock.now_ms()
        )
        again = event_id in o.pending or event_id in o.counted
        assert got.used == before
        assert got.at_ms == o.attributed(self.clock.now_ms())
        assert got.granted == (again or before + amount <= o.limit)
        if got.granted and not again:
            o.pending[event_id] = (amount, got.at_ms)
            o.granted.append((amount, got.at_ms))

    def count(self) -> None:
        o = self.oracle
        if not o.pending:
            return
        event_id = self.rng.choice(sorted(o.pending))
        amount, at = o.pending.pop(event_id)
        o.counted.add(event_id)
        o.events.append((at, amount))
        key = ReservationKey(1, "c", "m", event_id)
        self.rig.record([_delta(at, amount)], [key])

    def release(self) -> None:
        o = self.oracle
        if not o.pending:
            return
        event_id = self.rng.choice(sorted(o.pending))
        amount, at = o.pending.pop(event_id)
        o.granted.remove((amount, at))
        self.rig.view.release(1, "c", "m", event_id)

    def ingest(self) -> None:
        o, now = self.oracle, self.clock.now_ms()
        earliest = max(o.start - 2 * 3_600_000, now - 30 * DAY_S * 1000)
        if self.rng.random() < 0.3:
            edge = o.start // 60_000 * 60_000
            at = max(earliest, edge + self.rng.randint(-90_000, 90_000))
        else:
            at = self.rng.randint(earliest, now)
        at = min(at, now)
        value = self.rng.randint(1, 5)
        o.events.append((at, value))
        self.rig.record([_delta(at, value)])

    def check(self) -> None:
        o = self.oracle
        assert self.rig.view.usage(1, "c", "m", Aggregation.SUM, o.start, o.end) == o.used()
        assert o.granted_in_period() <= o.limit


def _delta(at_ms: int, value: int) -> Delta:
    minute = at_ms - at_ms % 60_000
    return Delta(1, "c", "m", Aggregation.SUM, minute, float(value), 1, at_ms)


def _period(rng: random.Random, kind: str, now: int) -> tuple[int, int]:
    """A period holding `now` (or starting within the next hours), at a random second."""
    span = {"week": 7 * DAY_S, "month": 30 * DAY_S, "year": 360 * DAY_S}[kind] * 1000
    if rng.random() < 0.25:
        start = now + rng.randint(0, 3 * 3_600_000)
    else:
        start = now - rng.randint(0, span * 9 // 10)
    start -= start % 1000
    if kind == "week":
        return start, start + 7 * DAY_S * 1000
    return start, _months_later(start, 1 if kind == "month" else 12)


@pytest.mark.parametrize("kind", ["week", "month", "year"])
@pytest.mark.parametrize("seed", range(RUNS))
def test_grants_and_usage_follow_the_oracle(
    make_rig: RigFactory, clock: FakeClock, kind: str, seed: int
) -> None:
    rng = random.Random(f"{kind}-{seed}")
    now = int(datetime.now(UTC).timestamp() * 1000)
    start, end = _period(rng, kind, now)
    clock._ms = max(now, start)
    run = Run(make_rig(), clock, Oracle(start, end, rng.randint(5, 40)), rng)
    for _ in range(STEPS):
        run.step()
