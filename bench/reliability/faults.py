"""Faults injected into the processes of a `DevStack`, and the supervision that undoes them.

`Faults` restarts any process that dies (like `meterline dev up` does) except while a scenario
holds it (a stopped Postgres must stay stopped for its 30 s). Kills go to the whole process
group, so a service's worker processes die with it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from bench.reliability.sampler import Sampler
from meterline.errors import ConfigError
from meterline_devstack.process import ManagedProcess
from meterline_devstack.stack import DevStack


class Faults(Sampler):
    """Restarts a stopped process of `stack` every `interval` seconds while the block runs."""

    def __init__(self, stack: DevStack, interval: float = 0.5) -> None:
        super().__init__(every_s=interval, join_s=5)
        self.stack = stack
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self.restarts: list[str] = []

    def proc(self, name: str) -> ManagedProcess:
        return self.stack.processes[name]

    def has(self, name: str) -> bool:
        return name in self.stack.processes

    @contextmanager
    def hold(self, name: str) -> Iterator[ManagedProcess]:
        """Keep the supervisor's hands off `name` for the block."""
        with self._lock:
            self._held.add(name)
        try:
            yield self.proc(name)
        finally:
            with self._lock:
                self._held.discard(name)

    def sample(self) -> None:
        for name, proc in list(self.stack.processes.items()):
            with self._lock:
                held = name in self._held
            if not held and not proc.alive():
                self._start(name, proc)

    def _start(self, name: str, proc: ManagedProcess) -> None:
        with suppress(ConfigError):
            proc.start(timeout=90)
            self.restarts.append(name)
        self.stack.write()

    def kill(self, name: str) -> None:
        """SIGKILL the process group of `name`, then start it again; returns once it is ready."""
        with self.hold(name) as proc:
            assert proc.proc is not None
            with suppress(ProcessLookupError):
                os.killpg(proc.proc.pid, signal.SIGKILL)
            proc.proc.wait()
            self._start(name, proc)

    def pause(self, name: str, seconds: float) -> None:
        """SIGSTOP `name` for `seconds`, then SIGCONT."""
        with self.hold(name) as proc:
            assert proc.proc is not None
            os.killpg(proc.proc.pid, signal.SIGSTOP)
            try:
                time.sleep(seconds)
            finally:
                os.killpg(proc.proc.pid, signal.SIGCONT)

    def stop_for(self, name: str, seconds: float) -> None:
        """Stop `name` cleanly (SIGTERM), keep it down for `seconds`, start it again."""
        with self.hold(name) as proc:
            proc.stop()
            time.sleep(seconds)
            self._start(name, proc)

    def restart(self, name: str) -> None:
        with self.hold(name) as proc:
            proc.stop()
            self._start(name, proc)
