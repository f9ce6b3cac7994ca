"""A managed process that never becomes ready is stopped, not left behind."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest

from meterline.errors import ConfigError
from meterline_devstack.process import ManagedProcess


def test_a_process_that_is_never_ready_is_stopped(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    proc = ManagedProcess("sleeper", argv, tmp_path / "sleeper.log", lambda: False)
    with pytest.raises(ConfigError, match="not ready"):
        proc.start(timeout=0.5)
    assert proc.pid is not None
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == "zombie"
