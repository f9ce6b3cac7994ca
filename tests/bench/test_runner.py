"""Discovery and isolation of benchmark modules: one failing module never stops the run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.harness import BenchContext, Figure
from bench.runner import BUILTIN, discover, run_all, run_module, selected


def test_discover_puts_builtins_first_then_bench_modules(tmp_path: Path) -> None:
    for name in ("bench_zeta.py", "bench_alpha.py", "helper.py"):
        (tmp_path / name).write_text("")
    assert discover(tmp_path) == [*BUILTIN, "bench.bench_alpha", "bench.bench_zeta"]


def test_selected_filters_by_substring() -> None:
    modules = ["bench.ceilings", "bench.baseline", "bench.bench_ingest"]
    assert selected(modules, []) == modules
    assert selected(modules, ["ingest", "base"]) == ["bench.baseline", "bench.bench_ingest"]


@pytest.fixture
def fake_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(
        "from bench.harness import Figure\n"
        "def run(ctx):\n    return [Figure('good.rate', 10.0, 'events/s', runs=ctx.runs)]\n"
    )
    (pkg / "bad.py").write_text("def run(ctx):\n    raise RuntimeError('broker gone')\n")
    (pkg / "wrong.py").write_text("def run(ctx):\n    return 42\n")
    (pkg / "slow.py").write_text("import time\ndef run(ctx):\n    time.sleep(30)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m.startswith("fakebench")]:
        del sys.modules[name]


@pytest.mark.usefixtures("fake_modules")
def test_failures_are_reported_and_the_run_goes_on() -> None:
    ctx = BenchContext({}, runs=2)
    names = ["fakebench.bad", "fakebench.wrong", "fakebench.missing", "fakebench.good"]
    report = run_all(names, ctx, budget=10, progress=lambda _: None)
    assert report.figures == [Figure("good.rate", 10.0, "events/s", runs=2)]
    errors = {f.module: f.error for f in report.failures}
    assert errors["fakebench.bad"].startswith("RuntimeError: broker gone (bad.py:")
    assert errors["fakebench.wrong"].startswith("TypeError: run(ctx) must return list[Figure]")
    assert errors["fakebench.missing"].startswith("ModuleNotFoundError")


@pytest.mark.usefixtures("fake_modules")
def test_a_module_past_its_budget_is_abandoned() -> None:
    outcome = run_module("fakebench.slow", BenchContext({}), budget=0.2)
    assert outcome.figures == [] and outcome.error and "abandoned" in outcome.error


def test_the_scale_out_bench_is_selected_by_its_name() -> None:
    """`python -m bench --only scaleout` runs the two scale-out ratios alone."""
    assert selected(discover(), ["scaleout"]) == ["bench.bench_scaleout"]
