"""The scale-out scenario reduced (bench/reliability/scaleout.py; full size in `make
reliability`, scenario 10): 2 ingest, 2 aggregators on 4 partitions, 2 entitlements APIs and 2
reporters on this test's database, topic and Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.reliability.scaleout import REDUCED, Backing, ScaleOut
from tests.fixtures.services import Topics
from tests.fixtures.stripe import StripeEmulatorHandle

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_two_of_everything_lose_nothing_count_once_share_limits_and_push_once(
    pg_conninfo: str,
    kafka_bootstrap: str,
    kafka_topics: Topics,
    redis_url: str,
    stripe_emulator: StripeEmulatorHandle,
    tmp_path: Path,
) -> None:
    backing = Backing(
        pg_conninfo,
        kafka_bootstrap,
        kafka_topics.usage,
        kafka_topics.dlq,
        redis_url,
        "ml",
        stripe_emulator.url,
        stripe_emulator.api_key,
        group=f"group-of-{kafka_topics.usage}",
    )
    figures = ScaleOut(backing, tmp_path, REDUCED).run()
    report = "\n".join(figures.lines())
    assert figures.sent == REDUCED.events, report
    assert figures.lost == 0 and figures.doubled == 0 and figures.wrong_totals == 0, report
    assert figures.group_behind == 0, report  # KEDA sees the true lag
    assert figures.refused_on_b_ms is not None and figures.refused_on_b_ms < 100, report
    assert figures.consume_on_b == 403, report
    assert figures.grant_on_b_ms is not None and figures.grant_on_b_ms < 100, report
    assert figures.pushing_replicas == 1, report
    assert figures.handover_s is not None and figures.handover_s < 30, report
    assert figures.pushed_twice == 0 and figures.stripe_equal, report
    assert figures.ok, report
