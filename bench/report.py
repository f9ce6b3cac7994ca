"""The results of one benchmark run: ratios to ceilings, the printed table and the JSON file.

A `Report` holds every figure of a run and every module that failed. Ratios: a figure whose
`ceiling` names another figure of the run gets value / ceiling; `SLOWEST` (and any figure named
`*end_to_end*` or `*e2e*` without a ceiling) is divided by the slowest rate ceiling measured.
Latency figures (unit ms, s or µs) get no ratio: a ratio of a latency to a rate means nothing.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
from rich.console import Console
from rich.table import Table

from bench.harness import PIPELINE_CEILINGS, SLOWEST, Figure

RATE_UNITS = ("/s",)


@dataclass
class Failure:
    """A benchmark module that raised: its name and the error's one-line summary."""

    module: str
    error: str


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    quick: bool = False

    def by_name(self) -> dict[str, Figure]:
        return {f.name: f for f in self.figures}

    def slowest_ceiling(self) -> Figure | None:
        """The lowest-rate ceiling of the run (the stage that bounds the whole pipeline)."""
        found = [f for f in self.figures if f.name in PIPELINE_CEILINGS and f.value > 0]
        return min(found, key=lambda f: f.value, default=None)

    def ratio(self, figure: Figure) -> tuple[float, str] | None:
        """(value / ceiling value, ceiling name) or None when the figure has no usable ceiling."""
        if not is_rate(figure.unit):
            return None
        target = figure.ceiling
        if target is None and _end_to_end(figure.name):
            target = SLOWEST
        ceiling = self.slowest_ceiling() if target == SLOWEST else self.by_name().get(target or "")
        if ceiling is None or ceiling.value <= 0 or ceiling is figure:
            return None
        return figure.value / ceiling.value, ceiling.name


def is_rate(unit: str) -> bool:
    return unit.endswith(RATE_UNITS)


def _end_to_end(name: str) -> bool:
    return "end_to_end" in name or "e2e" in name


def machine() -> dict[str, Any]:
    """The machine the figures came from: cores, memory, CPU model, OS, Python, load."""
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": _cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "note": "CPU shared with other processes; figures are indicative",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def human(value: float) -> str:
    """A figure printed with a sensible precision (12.3k, 512, 0.82)."""
    if abs(value) >= 10_000:
        return f"{value / 1000:,.1f}k"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(report: Report) -> Table:
    """The rich table: one row per figure, then one per failed module."""
    t = Table(title=f"Meterline benchmarks ({'quick' if report.quick else 'full'} run)")
    for col in ("figure", "median", "unit", "spread", "runs", "ratio", "target", "note"):
        t.add_column(col, justify="right" if col in ("median", "spread", "runs") else "left")
    for f in report.figures:
        ratio = report.ratio(f)
        spread = f"±{f.spread / f.value / 2:.0%}" if f.value and f.runs > 1 else ""
        shown = f"{ratio[0]:.2f} of {ratio[1]}" if ratio else ""
        t.add_row(f.name, human(f.value), f.unit, spread, str(f.runs), shown, f.target, f.note)
    for fail in report.failures:
        t.add_row(fail.module, "-", "", "", "0", "", "", f"[red]FAILED: {fail.error}[/red]")
    return t


def print_table(report: Report, console: Console | None = None) -> None:
    console = console or Console(width=160)
    console.print(table(report))
    console.print(_machine_line(machine()))


def _machine_line(m: dict[str, Any]) -> str:
    return (
        f"machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu_model']}, "
        f"Python {m['python']}, load {m['load_average']} ({m['note']})"
    )


def to_json(report: Report) -> bytes:
    """The whole run as JSON: machine, figures (with their ratios) and failures."""
    figures = []
    for f in report.figures:
        ratio = report.ratio(f)
        figures.append(
            {
                **dataclasses.asdict(f),
                "ratio": round(ratio[0], 4) if ratio else None,
                "ratio_to": ratio[1] if ratio else None,
            }
        )
    doc = {
        "started": report.started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "quick": report.quick,
        "machine": machine(),
        "figures": figures,
        "failures": [dataclasses.asdict(x) for x in report.failures],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def write_json(report: Report, folder: Path) -> Path:
    """Write `<folder>/<UTC timestamp>.json` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report.started:%Y%m%dT%H%M%SZ}.json"
    if path.exists():
        path = folder / f"{report.started:%Y%m%dT%H%M%SZ}-{int(time.time() * 1000) % 1000}.json"
    path.write_bytes(to_json(report))
    return path
