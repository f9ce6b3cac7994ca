"""TEST HOOK: crash the aggregator with SIGKILL at chosen points, to prove exactly-once.

Enabled only by `METERLINE_AGGREGATOR_CRASH_AT`, e.g. `inside_txn:0.02,after_commit:0.02`:
at each pass through a named point the process kills itself with that probability. Points:

- `inside_txn`: inside the batch's Postgres transaction, before COMMIT;
- `after_commit`: after the commit, before the Redis view is updated;
- `between_batches`: after the view is updated, before the next batch is committed.

Never set it in production. With the variable unset, `Hooks` does nothing.
"""

from __future__ import annotations

import os
import random
import signal

from meterline.errors import ConfigError

POINTS = ("inside_txn", "after_commit", "between_batches")


class Hooks:
    """Points the worker passes through; the base class does nothing."""

    def at(self, point: str) -> None:
        """Called by the worker at `point` (one of POINTS)."""


class CrashHooks(Hooks):
    def __init__(self, odds: dict[str, float], rng: random.Random | None = None) -> None:
        self._odds = odds
        self._rng = rng or random.Random()

    def at(self, point: str) -> None:
        if self._rng.random() < self._odds.get(point, 0.0):
            os.kill(os.getpid(), signal.SIGKILL)


def hooks_from_spec(spec: str) -> Hooks:
    """`Hooks()` for an empty spec, else `CrashHooks`; raises ConfigError for a bad spec."""
    if not spec.strip():
        return Hooks()
    odds: dict[str, float] = {}
    for part in spec.split(","):
        point, _, chance = part.strip().partition(":")
        try:
            value = float(chance)
        except ValueError:
            value = -1.0
        if point not in POINTS or not 0 <= value <= 1:
            raise ConfigError(
                f"METERLINE_AGGREGATOR_CRASH_AT: {part!r} is not point:probability "
                f"with point one of {', '.join(POINTS)}"
            )
        odds[point] = value
    return CrashHooks(odds)
