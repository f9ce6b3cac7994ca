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
        [sys.executable, "-m", "meterline.cli.main", "dev", "up", "--no-demo", "--home", str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        stack: Stack = wait_for(
            lambda: _complete(home), 120, "stack.json with every backing service"
        )
        started = set(stack.pids.values())
        assert {"kafka", "postgres", "redis"} <= set(stack.urls)

        os.kill(stack.pids["redis"], signal.SIGKILL)
        restarted = wait_for(
            lambda: (s := read_stack(home)) and s.pids["redis"] != stack.pids["redis"] and s,
            30,
            "redis to be restarted with a new PID",
        )
        assert psutil.pid_exists(restarted.pids["redis"])
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


def _complete(home: Path) -> Stack | None:
    stack = read_stack(home)
    if stack and {"kafka", "postgres", "redis"} <= set(stack.pids) and "kafka" in stack.urls:
        return stack
    return None


def _children_of(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] == pid]
