"""What scenario 7 reports of ingest under overload, from its /metrics page."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from bench.reliability.scenarios import describe_ingest, ingest_samples
from ingest.metrics import IngestMetrics


def _page(limit: float, produce_s: list[float]) -> str:
    metrics = IngestMetrics(CollectorRegistry())
    metrics.watch_concurrency(lambda: limit)
    for seconds in produce_s:
        metrics.produce_seconds.observe(seconds)
    return generate_latest(metrics.registry).decode()


def test_reads_the_limit_and_produce_time_from_ingest_metrics() -> None:
    found = ingest_samples(_page(37.5, [0.1, 0.3]))
    assert found["meterline_ingest_concurrency_limit"] == 37.5
    assert found["meterline_ingest_produce_seconds_count"] == 2
    assert abs(found["meterline_ingest_produce_seconds_sum"] - 0.4) < 1e-9


def test_describes_the_limit_range_and_the_mean_produce_time_of_the_span() -> None:
    first = ingest_samples(_page(128, [0.1]))
    last = ingest_samples(_page(4, [0.1, 0.2, 0.6]))
    line = describe_ingest([128, 4, 9, 12], [0.01, 2.5], first, last)
    assert line == (
        "ingest under overload: concurrency limit 4-128 (median 12), produce 400 ms mean, "
        "/metrics answered in 2.5 s at worst"
    )


def test_says_when_ingest_never_answered() -> None:
    assert "never answered" in describe_ingest([], [], {}, {})
