"""Service replicas as child processes, for scale-out tests and scenarios: each one a
`python -m <service>` on a port of its own, against shared backing services, that can be
SIGKILLed and read through its HTTP endpoints (health, metrics)."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from meterline_devstack.process import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
PORT_SETTING = {
    "ingest": "METERLINE_INGEST_PORT",
    "entitlements_api": "METERLINE_ENTITLEMENTS_PORT",
    "reporter": "METERLINE_REPORTER_PORT",
    "aggregator": "METERLINE_AGGREGATOR_PORT",
}


@dataclass
class Replica:
    """One replica of `service` (a module run with `python -m`), with `env` on top of ours."""

    service: str
    name: str
    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess = field(init=False)

    def __post_init__(self) -> None:
        env = {**self.env, PORT_SETTING[self.service]: str(self.port), "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", self.service]
        log = self.logs / f"{self.name}.log"
        self.process = ManagedProcess(self.name, argv, log, self._healthy, env=env, cwd=ROOT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 90.0) -> Replica:
        self.process.start(timeout)
        return self

    def alive(self) -> bool:
        return self.process.alive()

    def kill(self) -> None:
        """SIGKILL, no drain: what a crash or an OOM kill does."""
        proc = self.process.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        self.process.stop(timeout=20)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The sum of the samples of `name` on /metrics that carry `labels` (0 when none)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        want = (labels or {}).items()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and want <= sample.labels.items()
        )


def stop_all(replicas: list[Replica]) -> None:
    for replica in replicas:
        replica.stop()
