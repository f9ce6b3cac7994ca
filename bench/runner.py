"""Running a benchmark session: the stack, the bench tenant, and every benchmark module.

Modules run in this order: `bench.ceilings`, `bench.baseline`, then every `bench/bench_<name>.py`
in name order. A module that raises (or runs past its time budget) becomes a `Failure` row of the
report and the run goes on with the next one.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.harness import BenchContext, Figure
from bench.report import Failure, Report
from meterline.catalog import PostgresCatalogRepository, load_catalog
from meterline.errors import ConfigError, Conflict
from meterline.postgres import open_pool
from meterline.tenants import PostgresTenantRepository
from meterline_devstack.process import free_port, port_open
from meterline_devstack.stack import SERVICES, DevStack

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
CATALOG = ROOT / "deploy" / "catalog.example.yaml"
BUILTIN = ["bench.ceilings", "bench.baseline", "bench.end_to_end"]


def discover(folder: Path = BENCH_DIR) -> list[str]:
    """Module names of the built-in benchmarks, then of every `bench_<name>.py` in `folder`."""
    found = sorted(p.stem for p in folder.glob("bench_*.py"))
    return BUILTIN + [f"bench.{name}" for name in found]


def selected(modules: list[str], only: list[str]) -> list[str]:
    """The modules whose name contains one of `only` (all of them when `only` is empty)."""
    return [m for m in modules if not only or any(o in m for o in only)]


@dataclass
class Outcome:
    figures: list[Figure]
    error: str | None = None


def run_module(name: str, ctx: BenchContext, budget: float) -> Outcome:
    """Import `name` and call its `run(ctx)` in a thread; never raises."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            module: ModuleType = importlib.import_module(name)
            box["figures"] = _checked(module.run(ctx))
        except BaseException as exc:
            box["error"] = _summary(exc)

    thread = threading.Thread(target=target, name=f"bench-{name}", daemon=True)
    thread.start()
    thread.join(budget)
    if thread.is_alive():
        return Outcome([], f"still running after {budget:.0f} s; abandoned")
    return Outcome(box.get("figures", []), box.get("error"))


def _checked(result: object) -> list[Figure]:
    if not isinstance(result, list) or not all(isinstance(f, Figure) for f in result):
        raise TypeError(f"run(ctx) must return list[Figure], got {type(result).__name__}")
    return result


def _summary(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({Path(frame[0].filename).name}:{frame[0].lineno})" if frame else ""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:160]}{where}"


def run_all(
    modules: list[str],
    ctx: BenchContext,
    budget: float,
    progress: Callable[[str], None] = print,
) -> Report:
    """Run `modules` in order and collect their figures and failures."""
    report = Report(quick=ctx.quick)
    for name in modules:
        progress(f"running {name} ...")
        outcome = run_module(name, ctx, budget)
        report.figures.extend(outcome.figures)
        if outcome.error:
            progress(f"  {name} failed: {outcome.error}")
            report.failures.append(Failure(name, outcome.error))
    return report


def start_services(stack: DevStack, progress: Callable[[str], None] = print) -> None:
    """`DevStack.start_services`, except that a service that fails to start is reported and
    skipped instead of stopping the run (its benchmarks will then report their own errors)."""
    for spec in SERVICES:
        if importlib.util.find_spec(f"{spec.module}.__main__") is None:
            continue
        port = spec.default_port if not port_open(spec.default_port) else free_port()
        proc = stack._service_process(spec, port)
        try:
            stack._start(spec.name, proc)
        except ConfigError as exc:
            progress(f"{spec.name} did not start: {str(exc).splitlines()[0]}")
            proc.stop()
            stack.processes.pop(spec.name, None)
            continue
        stack.urls[spec.name] = f"http://127.0.0.1:{port}"
        stack.write()


def prepare_tenant(postgres_url: str, name: str) -> dict[str, Any]:
    """Create (or reuse) tenant `name` with the demo catalog and a fresh key per scope."""
    with open_pool(postgres_url, max_size=2) as pool:
        tenants = PostgresTenantRepository(pool)
        try:
            tenant_id = tenants.create_tenant(name).id
        except Conflict:
            tenant_id = tenants.get_tenant(name).id
        keys = {s: tenants.create_key(name, [s])[1] for s in ("ingest", "read", "admin")}
        PostgresCatalogRepository(pool).apply(tenant_id, load_catalog(CATALOG))
    return {"tenant": name, "tenant_id": tenant_id, "keys": keys, "catalog": str(CATALOG)}


@contextmanager
def running_stack(home: Path, keep: bool = False) -> Iterator[DevStack]:
    """The backing services (from the environment's URLs, else embedded) started in `home`;
    everything the stack started is stopped after, and `home` removed unless `keep`."""
    stack = DevStack(home)
    try:
        stack.start_backing()
        yield stack
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def supervise_in_background(stack: DevStack) -> threading.Thread:
    """Restart crashed processes while the benchmarks run (stops with `stack.stop()`)."""
    thread = threading.Thread(target=stack.supervise, name="bench-supervisor", daemon=True)
    thread.start()
    return thread
