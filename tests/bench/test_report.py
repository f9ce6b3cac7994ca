"""The report: ratios to ceilings, the printed table and the JSON file."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
from rich.console import Console

from bench.harness import SLOWEST, BenchContext, Figure, rate, repeat
from bench.report import Failure, Report, human, print_table, to_json, write_json


def _report() -> Report:
    return Report(
        figures=[
            Figure("ceiling.http_single", 8_000, "events/s"),
            Figure("ceiling.http_batch", 300_000, "events/s"),
            Figure("ceiling.kafka_produce", 400_000, "msg/s"),
            Figure("ceiling.pg_copy", 200_000, "rows/s", spread=20_000, runs=3),
            Figure("ingest.batch", 100_000, "events/s", ceiling="ceiling.http_batch"),
            Figure("pipeline.end_to_end", 50_000, "events/s"),
            Figure("aggregator.rate", 80_000, "events/s", ceiling=SLOWEST),
            Figure("freshness.p99", 120, "ms", ceiling="ceiling.pg_copy"),
            Figure("orphan", 5, "events/s", ceiling="ceiling.nope"),
        ],
        failures=[Failure("bench.bench_reporter", "RuntimeError: boom")],
    )


def test_ratio_to_named_ceiling() -> None:
    report = _report()
    assert report.ratio(report.by_name()["ingest.batch"]) == (1 / 3, "ceiling.http_batch")


def test_end_to_end_is_divided_by_the_slowest_pipeline_ceiling() -> None:
    report = _report()
    assert report.slowest_ceiling() == report.by_name()["ceiling.pg_copy"]
    assert report.ratio(report.by_name()["pipeline.end_to_end"]) == (0.25, "ceiling.pg_copy")
    assert report.ratio(report.by_name()["aggregator.rate"]) == (0.4, "ceiling.pg_copy")


def test_no_ratio_for_latencies_unknown_ceilings_or_ceilings_themselves() -> None:
    report = _report()
    names = report.by_name()
    assert report.ratio(names["freshness.p99"]) is None
    assert report.ratio(names["orphan"]) is None
    assert report.ratio(names["ceiling.pg_copy"]) is None


def test_table_shows_every_figure_and_failure() -> None:
    buffer = io.StringIO()
    print_table(_report(), Console(file=buffer, width=250))
    text = buffer.getvalue()
    for name in ("ceiling.http_batch", "pipeline.end_to_end", "bench.bench_reporter", "FAILED"):
        assert name in text
    assert "0.33 of ceiling.http_batch" in text
    assert "±5%" in text
    assert "machine: " in text


def test_json_holds_machine_figures_ratios_and_failures(tmp_path: Path) -> None:
    path = write_json(_report(), tmp_path)
    doc = orjson.loads(path.read_bytes())
    assert set(doc) == {"started", "finished", "quick", "machine", "figures", "failures"}
    assert len(doc["figures"]) == len(orjson.loads(to_json(_report()))["figures"]) == 9
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["memory_gib"] > 0
    assert {"cpu_model", "python"} <= set(doc["machine"])
    fig = {f["name"]: f for f in doc["figures"]}
    assert fig["pipeline.end_to_end"]["ratio"] == 0.25
    assert fig["pipeline.end_to_end"]["ratio_to"] == "ceiling.pg_copy"
    assert fig["freshness.p99"]["ratio"] is None
    assert doc["failures"] == [{"module": "bench.bench_reporter", "error": "RuntimeError: boom"}]


def test_two_reports_in_one_second_do_not_overwrite(tmp_path: Path) -> None:
    report = _report()
    assert write_json(report, tmp_path) != write_json(report, tmp_path)


def test_human_numbers() -> None:
    assert human(123_456) == "123.5k"
    assert human(512.4) == "512"
    assert human(0.8234) == "0.823"


def test_repeat_gives_median_and_spread() -> None:
    values = iter([3.0, 1.0, 2.0])
    assert repeat(lambda: next(values), 3) == (2.0, 2.0)


def test_a_figure_of_one_value_per_run_is_their_median_and_spread() -> None:
    figure = Figure.of("x.rate", [3.0, 1.0, 2.0], "events/s", target=">= 2")
    assert (figure.value, figure.spread, figure.runs) == (2.0, 2.0, 3)
    assert (figure.unit, figure.target) == ("events/s", ">= 2")


def test_rate_and_scale() -> None:
    assert rate(10, lambda: None) > 0
    assert BenchContext({}, quick=True).scale(1000) == 100
    assert BenchContext({}).scale(1000) == 1000
