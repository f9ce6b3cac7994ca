"""The pieces of issue 21's combined probe: attackers in processes of their own (slow clients
that reopen every connection ingest cuts, a tenant flooding 1,000-event batches), another
tenant's single events timed one after the other, and the cores each may use.

On a 2-core machine a load generator sharing ingest's cores measures itself as much as ingest,
and client threads in the measuring process delay its requests by taking the GIL.
`Cores.split()` gives ingest one core and everything else (the attackers, this process, the
broker, Postgres and Redis) the other, and the attackers run in processes of their own.
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import psutil

from tests.ingest.support import ROOT

ALL_CPUS = frozenset(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Cores:
    """Which CPUs ingest gets and which the rest gets (all of them when there is one)."""

    ingest: frozenset[int]
    rest: frozenset[int]

    @classmethod
    def split(cls) -> Cores:
        cpus = sorted(ALL_CPUS)
        if len(cpus) < 2:
            return cls(ALL_CPUS, ALL_CPUS)
        return cls(frozenset(cpus[:1]), frozenset(cpus[1:]))

    def __str__(self) -> str:
        if self.ingest == self.rest:
            return "not pinned (one CPU)"
        return f"ingest on CPU {sorted(self.ingest)}, the rest on CPU {sorted(self.rest)}"


def pin(pids: Iterable[int], cpus: frozenset[int]) -> None:
    """Every thread of each process in `pids`, and of their children, onto `cpus` (threads
    and processes started later inherit it)."""
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                for thread in proc.threads():
                    os.sched_setaffinity(thread.id, cpus)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue


@contextmanager
def pinned(pids: Iterable[int], cpus: frozenset[int]) -> Iterator[None]:
    """`pin` for the block; afterwards the processes may use every CPU again."""
    pids = list(pids)
    pin(pids, cpus)
    try:
        yield
    finally:
        pin(pids, ALL_CPUS)


@contextmanager
def attacker(module: str, args: list[str], cpus: frozenset[int]) -> Iterator[dict[str, Any]]:
    """`python -m tests.security.<module> *args` on `cpus` while the block runs (from a second
    before it); yields a dict filled with what it printed as JSON once it has stopped (it
    stops when its standard input closes)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", f"tests.security.{module}", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    report: dict[str, Any] = {}
    time.sleep(1.0)
    try:
        yield report
    finally:
        out, _ = proc.communicate(b"", timeout=60)
        report.update(orjson.loads(out.splitlines()[-1]))


class Tenant:
    """A tenant sending one event per request on one keep-alive connection, timing each."""

    def __init__(self, url: str, key: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self._conn = http.client.HTTPConnection(host, int(port), timeout=10)
        self._headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def send(self, event_id: str) -> tuple[int, float]:
        """One event: its status and seconds. A kept-alive connection the server has closed
        meanwhile (its idle timeout) is reopened and the event sent again, timed from then."""
        body = orjson.dumps({"id": event_id, "customer": "c", "meter": "api_calls"})
        try:
            return self._exchange(body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self._conn.close()
            return self._exchange(body)

    def _exchange(self, body: bytes) -> tuple[int, float]:
        started = time.perf_counter()
        self._conn.request("POST", "/v1/events", body, self._headers)
        response = self._conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started

    def series(self, prefix: str, n: int) -> tuple[set[int], list[float]]:
        """`n` events one after the other: the statuses seen and each event's seconds."""
        answers = [self.send(f"{prefix}-{i}") for i in range(n)]
        return {s for s, _ in answers}, [t for _, t in answers]

    def close(self) -> None:
        self._conn.close()


def p99(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=100, method="inclusive")[98]
