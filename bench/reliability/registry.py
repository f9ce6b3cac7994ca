"""The scenarios by number, and the subset the CI form runs."""

from __future__ import annotations

from collections.abc import Callable

from bench.reliability import scenarios
from bench.reliability.fuzz import fuzzing
from bench.reliability.model import pipeline_model
from bench.reliability.scaleout import scale_out
from bench.reliability.world import Result, World

SCENARIOS: dict[int, Callable[[World], Result]] = {
    1: scenarios.duplicates,
    2: scenarios.aggregator_kills,
    3: scenarios.ingest_kills,
    4: scenarios.broker_pause,
    5: scenarios.postgres_stop,
    6: scenarios.redis_flush,
    7: scenarios.overload,
    8: fuzzing,
    9: pipeline_model,
    10: scale_out,
}
CI_SCENARIOS = [1, 2, 3, 6, 8]
"""Scenarios 9 and 10 run reduced in `make test` on their own
(tests/entitlements/test_consume_model.py, tests/reliability/test_scaleout.py)."""
