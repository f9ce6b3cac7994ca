"""Every service's start-up freezes what it built out of the garbage collector
(`meterline.startup`), so that a full collection under load scans only what requests and held
connections made."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["ingest", "aggregator", "reporter", "entitlements_api"]


def test_settling_freezes_what_is_alive_and_keeps_pythons_thresholds() -> None:
    """In a process of its own: freezing the test process would change every later test."""
    script = (
        "import gc, json\n"
        "from meterline.startup import settle_garbage_collector\n"
        "before = gc.get_threshold()\n"
        "settle_garbage_collector()\n"
        "print(json.dumps([gc.get_freeze_count(), gc.get_threshold() == before, gc.isenabled()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    frozen, same_thresholds, enabled = json.loads(out.stdout)
    assert frozen > 1000 and same_thresholds is True and enabled is True


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_settles_the_collector_before_it_serves(service: str) -> None:
    """`main` calls `settle_garbage_collector()` once, after the parts are built (the last
    call to `build`, if any) and before the first call that serves (`run`, `serve_forever`,
    a loop of batches)."""
    tree = ast.parse((ROOT / service / "__main__.py").read_text())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    calls = [n for n in ast.walk(main) if isinstance(n, ast.Call)]
    settles = [c.lineno for c in calls if _name(c.func) == "settle_garbage_collector"]
    assert len(settles) == 1, f"{service}: settle_garbage_collector() calls: {settles}"
    builds = [c.lineno for c in calls if _name(c.func) == "build"]
    serves = [c.lineno for c in calls if _name(c.func) in {"run", "serve_forever", "start"}]
    assert all(line < settles[0] for line in builds), (service, builds, settles)
    assert serves and all(line > settles[0] for line in serves), (service, serves, settles)


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""
