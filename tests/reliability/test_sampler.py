"""`Sampler` samples while its block runs, and not after."""

from __future__ import annotations

import time

from bench.reliability.sampler import Sampler


class Counting(Sampler):
    def __init__(self) -> None:
        super().__init__(every_s=0.01)
        self.samples = 0

    def sample(self) -> None:
        self.samples += 1


def test_samples_while_the_block_runs_and_stops_when_it_ends() -> None:
    with Counting() as counting:
        deadline = time.monotonic() + 5
        while counting.samples < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert counting.samples >= 3
    after = counting.samples
    time.sleep(0.1)
    assert counting.samples == after
