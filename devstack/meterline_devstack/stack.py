"""`meterline dev up`: the backing services, migrations, topics and the Meterline services,
supervised until Ctrl-C.

Each backing service comes from its environment URL when set, else is embedded. Every process
started here is recorded in `.meterline/stack.json` (URLs and PIDs); a process that dies is
restarted on the same port and its new PID written, so crash tests may kill any of them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from meterline.kafka import ensure_topics
from meterline.postgres import apply_migrations, connect
from meterline.settings import TOPIC_DLQ, TOPIC_USAGE
from meterline.stackfile import Stack, remove_stack, write_stack
from meterline_devstack.broker import broker_process
from meterline_devstack.containers import Container, docker_answers, start_container
from meterline_devstack.postgres import postgres_process
from meterline_devstack.process import ManagedProcess, free_port, port_open
from meterline_devstack.redis import redis_process

# The webhook secret of the stack's own emulator (settings have no default secret).
DEV_WEBHOOK_SECRET = "whsec_meterline_dev"

# Backing services: (stack.json key, environment variable, embedded factory).
BACKING: list[tuple[str, str, Callable[[Path], tuple[ManagedProcess, str]]]] = [
    ("postgres", "METERLINE_DATABASE_URL", postgres_process),
    ("redis", "METERLINE_REDIS_URL", redis_process),
    ("kafka", "METERLINE_KAFKA_BOOTSTRAP", broker_process),
]


@dataclass(frozen=True)
class ServiceSpec:
    """A Meterline service: its module (`python -m`), stack.json key and port setting."""

    name: str
    module: str
    port_env: str
    default_port: int
    health_path: str = "/healthz"

    @property
    def installed(self) -> bool:
        return importlib.util.find_spec(f"{self.module}.__main__") is not None


SERVICES = [
    ServiceSpec("stripe", "stripe_emulator", "", 12111, "/_emulator/health"),
    ServiceSpec("ingest", "ingest", "METERLINE_INGEST_PORT", 8001),
    ServiceSpec("entitlements", "entitlements_api", "METERLINE_ENTITLEMENTS_PORT", 8002),
    ServiceSpec("reporter", "reporter", "METERLINE_REPORTER_PORT", 8003),
    ServiceSpec("aggregator", "aggregator", "METERLINE_AGGREGATOR_PORT", 8004),
]


@dataclass
class DevStack:
    home: Path
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    containers: list[Container] = field(default_factory=list)
    partitions: int = 4
    stopping: threading.Event = field(default_factory=threading.Event)

    def start_backing(self) -> None:
        """Postgres, Redis and Kafka from, in order: the environment's URLs, containers when a
        Docker engine answers, else embedded processes. Then migrate and create the topics."""
        use_containers = docker_answers()
        for name, env_var, factory in BACKING:
            if os.environ.get(env_var):
                self.urls[name] = os.environ[env_var]
            elif use_containers:
                container, self.urls[name] = start_container(name)
                self.containers.append(container)
            else:
                proc, self.urls[name] = factory(self.home)
                self._start(name, proc)
        self.prepare()

    def prepare(self) -> None:
        with connect(self.urls["postgres"]) as conn:
            apply_migrations(conn)
        ensure_topics(self.urls["kafka"], [TOPIC_USAGE, TOPIC_DLQ], self.partitions)

    def start_services(self) -> None:
        """Start every service whose package is installed, each on its default port if free.

        The Stripe emulator is skipped when METERLINE_STRIPE_API_BASE points elsewhere.
        """
        if os.environ.get("METERLINE_STRIPE_API_BASE"):
            self.urls["stripe"] = os.environ["METERLINE_STRIPE_API_BASE"]
        for spec in SERVICES:
            if spec.name in self.urls or not spec.installed:
                continue
            port = spec.default_port if not port_open(spec.default_port) else free_port()
            self.urls[spec.name] = f"http://127.0.0.1:{port}"
            self._start(spec.name, self._service_process(spec, port))

    def _service_process(self, spec: ServiceSpec, port: int) -> ManagedProcess:
        argv = [sys.executable, "-m", spec.module]
        env = self.environment()
        if spec.port_env:
            env[spec.port_env] = str(port)
        else:
            argv += ["--port", str(port), "--state-file", str(self.home / "stripe-state.json")]
        url = f"http://127.0.0.1:{port}{spec.health_path}"
        log = self.home / "logs" / f"{spec.name}.log"
        return ManagedProcess(spec.name, argv, log, lambda: _healthy(url), env=env)

    def environment(self) -> dict[str, str]:
        """The environment that points a Meterline process at this stack."""
        env = {
            "METERLINE_DATABASE_URL": self.urls["postgres"],
            "METERLINE_REDIS_URL": self.urls["redis"],
            "METERLINE_KAFKA_BOOTSTRAP": self.urls["kafka"],
            "METERLINE_HOME": str(self.home.resolve()),
            # webhook receivers of a dev stack run on this machine (loopback)
            "METERLINE_WEBHOOK_ALLOW_PRIVATE_URLS": "true",
        }
        if "stripe" in self.urls:
            env["METERLINE_STRIPE_API_BASE"] = self.urls["stripe"]
        if "stripe" in self.processes and not os.environ.get("METERLINE_STRIPE_WEBHOOK_SECRET"):
            env["METERLINE_STRIPE_WEBHOOK_SECRET"] = DEV_WEBHOOK_SECRET
        return env

    def add_process(self, name: str, url: str, proc: ManagedProcess) -> None:
        """Start `proc` (a demo's own process, such as the example app), supervised and
        recorded in stack.json like the services."""
        self.urls[name] = url
        self._start(name, proc)

    def _start(self, name: str, proc: ManagedProcess) -> None:
        proc.start()
        self.processes[name] = proc
        self.write()

    def write(self) -> None:
        pids = {n: p.pid for n, p in self.processes.items() if p.pid}
        write_stack(self.home, Stack(dict(self.urls), pids, os.getpid()))

    def supervise(self, interval: float = 0.5) -> None:
        """Restart any process that dies, until `stop()` is called."""
        while not self.stopping.wait(interval):
            for name, proc in list(self.processes.items()):
                if not proc.alive() and not self.stopping.is_set():
                    self._restart(name, proc)

    def _restart(self, name: str, proc: ManagedProcess) -> None:
        print(
            f"{name} exited (code {proc.proc.returncode if proc.proc else '?'}); restarting",
            file=sys.stderr,
            flush=True,
        )
        try:
            proc.start()
            if name == "kafka":
                ensure_topics(self.urls["kafka"], [TOPIC_USAGE, TOPIC_DLQ], self.partitions)
        except Exception as exc:  # keep supervising the others; retry on the next round
            print(f"restart of {name} failed: {exc}", file=sys.stderr, flush=True)
        self.write()

    def stop(self) -> None:
        """Stop everything this stack started, services first, and remove stack.json."""
        self.stopping.set()
        for proc in reversed(list(self.processes.values())):
            proc.stop()
        for container in self.containers:
            container.stop()
        remove_stack(self.home)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def run_until_signal(
    stack: DevStack, after_start: Callable[[DevStack], None] | None = None
) -> None:
    """Start everything, run `after_start` (the demo), supervise; stop cleanly on SIGINT/SIGTERM."""

    starting = True

    def on_signal(signum: int, _frame: object) -> None:
        stack.stopping.set()
        if starting:  # interrupt a start-up that may be waiting on a process
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start_backing()
        stack.start_services()
        if after_start:
            after_start(stack)
        starting = False
        stack.supervise()
    except KeyboardInterrupt:
        pass
    finally:
        starting = False
        stack.stop()
