"""`python -m bench.reliability [--ci] [--scenario N ...]` (`make reliability`).

Starts the stack (backing services from the environment's URLs, else embedded; every service),
runs the chosen scenarios (each on a usage topic of its own, see `World.fresh_topic`), prints
one table and exits 1 if any scenario lost or double-counted an event or failed another of its
checks (2 if the stack lacks ingest or the aggregator).
"""

from __future__ import annotations

import os
import resource
import time
import traceback
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bench.reliability.faults import Faults
from bench.reliability.observe import Observer
from bench.reliability.registry import CI_SCENARIOS, SCENARIOS
from bench.reliability.scenarios import OVERLOAD_RATE, OVERLOAD_TENANT
from bench.reliability.world import Result, World
from bench.runner import ROOT, running_stack, start_services

console = Console(width=180)
OPEN_FILES = 16_384


def run_scenarios(world: World, numbers: list[int]) -> list[Result]:
    """Run each scenario; one that raises becomes a failed result carrying its error."""
    results = []
    for n in numbers:
        title = (SCENARIOS[n].__doc__ or "").splitlines()[0]
        console.print(f"[bold]scenario {n}[/bold]: {title}")
        start = time.monotonic()
        topic = world.fresh_topic(f"rel{n}")
        before = [f"topic {topic}", *world.ensure_ready()]
        try:
            result = SCENARIOS[n](world)
        except Exception as exc:
            result = Result(n, SCENARIOS[n].__name__, notes=[f"error: {exc!r}"])
            traceback.print_exc()
        result.notes[:0] = before
        result.elapsed = time.monotonic() - start
        if len(numbers) > 1:
            console.print(table([result]))
        results.append(result)
    return results


def table(results: list[Result]) -> Table:
    t = Table(title="Meterline reliability")
    columns = ("#", "scenario", "sent", "acked", "counted", "lost", "doubled", "recovery", "time")
    for col in (*columns, "ok", "notes"):
        t.add_column(col, justify="right" if col in columns[2:] else "left", overflow="fold")
    for r in results:
        recovery = f"{r.recovery_s:.1f} s" if r.recovery_s is not None else "-"
        ok = "[green]yes[/green]" if r.ok else "[red]NO[/red]"
        t.add_row(
            str(r.number), r.name, f"{r.sent:,}", f"{r.acked:,}", f"{r.counted:,}",
            str(r.lost), str(r.doubled), recovery, f"{r.elapsed:.0f} s", ok, "\n".join(r.notes),
        )  # fmt: skip
    return t


def main(
    ci: Annotated[bool, typer.Option(help="Scenarios 1-3, 6, 8 at reduced size.")] = False,
    scenario: Annotated[
        list[int] | None, typer.Option(help="Run only these scenarios (1-9).")
    ] = None,
    keep: Annotated[bool, typer.Option(help="Keep the stack's folder (logs) afterwards.")] = False,
) -> None:
    """The end-to-end reliability suite: every event acknowledged is counted exactly once."""
    numbers = scenario or (CI_SCENARIOS if ci else sorted(SCENARIOS))
    unknown = [n for n in numbers if n not in SCENARIOS]
    if unknown:
        raise typer.BadParameter(f"no scenario {unknown}; choose among 1-9")
    _raise_open_files_limit()
    home = ROOT / ".meterline" / f"reliability-{os.getpid()}"
    limits = orjson.loads(os.environ.get("METERLINE_INGEST_TENANT_RATES") or "{}")
    limits[OVERLOAD_TENANT] = OVERLOAD_RATE
    os.environ["METERLINE_INGEST_TENANT_RATES"] = orjson.dumps(limits).decode()
    with running_stack(home, keep) as stack:
        start_services(stack, console.print)
        missing = [s for s in ("ingest", "aggregator") if s not in stack.processes]
        if missing:
            console.print(f"[red]cannot run: {', '.join(missing)} not available[/red]")
            raise typer.Exit(2)
        observer = Observer(stack.urls["postgres"], stack.urls["redis"])
        with Faults(stack) as faults:
            world = World(stack, faults, observer, ci=ci)
            results = run_scenarios(world, numbers)
    console.print(table(results))
    failed = [r.number for r in results if not r.ok]
    if failed:
        console.print(f"[red]failed scenarios: {failed}[/red]")
        raise typer.Exit(1)
    console.print("[green]every scenario passed: 0 lost, 0 double-counted[/green]")


def _raise_open_files_limit() -> None:
    """Scenario 7 holds ~1,900 connections, in this process and in ingest (which inherits the
    limit): a soft limit of 1,024, the default of many systems, would refuse them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


if __name__ == "__main__":
    typer.run(main)
