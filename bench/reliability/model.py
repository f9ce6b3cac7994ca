"""Scenario 9: the seeded model of the whole pipeline (tests/entitlements/test_consume_model.py)
at full size.

The model drives the API, ingest, the aggregator, Postgres, Redis and the broker through random
consumes and ingest events with Redis flushes, aggregator SIGKILLs, publish timeouts and clock
moves, and an independent oracle checks every answer, the limits after every step and the
counts once idle (see the test's docstring). It needs to move the API's clock and to inject
publish timeouts inside the API, so it runs as that pytest test, in a process of its own with
its own embedded backing services (it flushes Redis), not against this suite's stack. Each
seed reports its figures as a JSON line; the scenario adds them up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

from bench.reliability.world import Result, World
from bench.runner import ROOT

FULL = (list(range(1, 9)), 150)  # seeds, steps per seed
CI = ([1, 2], 60)
TEST = "tests/entitlements/test_consume_model.py"
_STACK_VARS = ("METERLINE_DATABASE_URL", "METERLINE_REDIS_URL", "METERLINE_KAFKA_BOOTSTRAP")


def pipeline_model(world: World) -> Result:
    """9: the pipeline model: consumes, ingest, flushes, kills, timeouts, midnights, periods."""
    seeds, steps = CI if world.ci else FULL
    result = Result(9, "pipeline model")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "model.jsonl"
        env = {k: v for k, v in os.environ.items() if k not in _STACK_VARS}
        env.update(
            METERLINE_MODEL_PIPELINE_SEEDS=",".join(map(str, seeds)),
            METERLINE_MODEL_PIPELINE_STEPS=str(steps),
            METERLINE_MODEL_PIPELINE_REPORT=str(report),
            PYTHONPATH=str(ROOT),
        )
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        runs = [orjson.loads(line) for line in report.read_bytes().splitlines()]
    return _result(result, runs, done, len(seeds))


def _result(
    result: Result, runs: list[dict[str, float]], done: subprocess.CompletedProcess[str], want: int
) -> Result:
    totals: dict[str, float] = {}
    for run in runs:
        for name, value in run.items():
            if name not in ("seed", "steps") and not name.startswith("t_"):
                totals[name] = totals.get(name, 0) + value
    sent = sum(v for k, v in totals.items() if k.startswith(("consume_", "ingest_")))
    result.sent, result.counted = int(sent), int(totals.get("counted", 0))
    result.acked = result.counted  # the oracle checked counted = accepted + granted exactly
    result.ok = done.returncode == 0 and len(runs) == want
    shown = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(totals.items()) if k != "elapsed_s")
    result.notes.append(f"{len(runs)} of {want} seeds passed; {shown}")
    if not result.ok:
        result.notes.append(done.stdout[-1500:])
    return result
