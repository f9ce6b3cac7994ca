"""`python -m bench` (`make bench`): start the stack, run every benchmark, print one table and
write `bench/results/<timestamp>.json`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bench.harness import BenchContext
from bench.report import print_table, write_json
from bench.runner import (
    BENCH_DIR,
    ROOT,
    discover,
    prepare_tenant,
    run_all,
    running_stack,
    selected,
    start_services,
    supervise_in_background,
)

console = Console(width=160)


def main(
    quick: Annotated[bool, typer.Option(help="A short run: a tenth of each workload.")] = False,
    runs: Annotated[
        int, typer.Option(min=0, help="Runs per figure (median and spread); 0: 2 quick, 3 full.")
    ] = 0,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only modules whose name contains this.")
    ] = None,
    keep: Annotated[bool, typer.Option(help="Keep the stack's folder (logs) afterwards.")] = False,
    results: Annotated[Path, typer.Option(help="Where to write the JSON.")] = BENCH_DIR / "results",
) -> None:
    """Measure the stage ceilings, the naive baseline and every Meterline benchmark."""
    modules = selected(discover(), only or [])
    home = ROOT / ".meterline" / f"bench-{os.getpid()}"
    with running_stack(home, keep) as stack:
        extra = prepare_tenant(stack.urls["postgres"], "bench")
        start_services(stack, console.print)
        supervise_in_background(stack)
        ctx = BenchContext(
            urls=dict(stack.urls),
            quick=quick,
            runs=runs or (2 if quick else 3),
            extra={**extra, "stack": stack, "home": str(home)},
        )
        console.print(f"stack up: {', '.join(sorted(stack.urls))}; modules: {', '.join(modules)}")
        report = run_all(modules, ctx, budget=240 if quick else 900, progress=console.print)
    print_table(report, console)
    console.print(f"results written to {write_json(report, results)}")


if __name__ == "__main__":
    typer.run(main)
