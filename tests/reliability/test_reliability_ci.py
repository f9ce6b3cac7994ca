"""The CI form of the reliability suite (scenarios 1-3, 6 and 8 at reduced size), end to end.

It starts its own embedded stack (the scenarios kill, pause and restart its processes, which the
session's shared fixtures must not suffer), so the environment's service URLs are removed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
URL_VARIABLES = (
    "METERLINE_DATABASE_URL",
    "METERLINE_REDIS_URL",
    "METERLINE_KAFKA_BOOTSTRAP",
    "METERLINE_STRIPE_API_BASE",
    "METERLINE_KAFKA_TOPIC",
    "METERLINE_KAFKA_DLQ_TOPIC",
)


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_ci_form_loses_nothing_and_counts_nothing_twice() -> None:
    env = {k: v for k, v in os.environ.items() if k not in URL_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-m", "bench.reliability", "--ci"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = done.stdout[-8000:] + "\n" + done.stderr[-4000:]
    assert done.returncode == 0, report
    assert "every scenario passed" in done.stdout, report
