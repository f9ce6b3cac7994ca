"""`meterline dev up`: everything starts, dead processes come back, Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from meterline.stackfile import Stack, read_stack
from meterline_devstack.stack import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def home() -> Iterator[Path]:
    path = ROOT / ".meterline" / f"devstack-test-{os.getpid()}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_dev_up_supervises_and_ctrl_c_leaves_no_process(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "meterline_ops.main", "dev", "up", "--no-demo", "--home", str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        stack: Stack = wait_for(lambda: _complete(home), 180, "stack.json with every process")
        started = set(stack.pids.values())
        for victim in ("redis", "ingest"):
            os.kill(stack.pids[victim], signal.SIGKILL)
            restarted = wait_for(
                lambda v=victim: (s := read_stack(home)) and s.pids[v] != stack.pids[v] and s,
                60,
                f"{victim} to be restarted with a new PID",
            )
            assert psutil.pid_exists(restarted.pids[victim])
            started |= set(restarted.pids.values())
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "Meterline is running" in output
    alive = [p for p in started if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert alive == []
    assert not (home / "stack.json").exists()
    assert not _children_of(proc.pid)


EXPECTED = {"kafka", "postgres", "redis"} | {s.name for s in SERVICES if s.installed}


def _complete(home: Path) -> Stack | None:
    stack = read_stack(home)
    return stack if stack and set(stack.pids) >= EXPECTED and set(stack.urls) >= EXPECTED else None


def _children_of(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] == pid]
