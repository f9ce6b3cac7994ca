"""Ingest throughput and latency, and the same load against a bare ASGI endpoint.

Figures, closed loop (saturation): single-event requests/s and p50/p99 latency at 64
connections; events/s with 100-event batches and p99 per request; each compared (ratio) with a
bare ASGI app that only parses the same JSON, measured in the same run; ingest's own CPU per
request and per event (from /proc, every process of its group), which does not swing with other
load the way rates do; and the load generator's own CPU use, since it shares the machine's
cores with ingest, the broker and Redis. In a closed loop latency = connections / rate (Little's
law), so its p99 mostly restates the throughput.

Figures, open loop (`*_at_4000`, `*_at_1000`): the targets' rates offered exactly (4,000
single-event requests/s; 1,000 100-event requests/s) over the same 64 connections, with p50/p99
measured from each request's due time (`bench.openloop.offer`), so waiting behind a slow server
is counted, and the rate achieved.

The load generator is a lean asyncio raw-socket HTTP/1.1 keep-alive client in this process.
Ingest and the bare app each run as their own process (uvicorn, uvloop, httptools); each run
(one of each figure) has an ingest and an embedded broker of its own (`fresh_ingest`).
Run alone: `python -m bench.bench_ingest bare PORT` serves the bare app.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.harness import BenchContext, Figure
from bench.loadgen import Window, encode_request, hammer_async
from bench.openloop import OpenLoopResult, offer
from meterline.catalog import PostgresCatalogRepository, parse_catalog
from meterline.kafka import ensure_topics
from meterline.postgres import open_pool
from meterline.tenants import PostgresTenantRepository
from meterline_devstack.broker import broker_process
from meterline_devstack.process import ManagedProcess, free_port, port_open

ROOT = Path(__file__).resolve().parents[1]
SINGLE_CONNECTIONS = 64
BATCH_CONNECTIONS = 32
BATCH = 100
OPEN_CONNECTIONS = 64
SINGLE_RATE = 4000
BATCH_RATE = 1000
CATALOG = {"meters": [{"key": "api_calls", "aggregation": "sum"}]}


@dataclass
class Load:
    """What one load run measured."""

    requests: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    server_cpu_seconds: float = 0.0
    """CPU of the server's processes over the measured window (0 when not measured)."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def single_body(conn: int, n: int, run: str) -> bytes:
    return b'{"id":"%s-%d-%d","customer":"c%d","meter":"api_calls","value":1}' % (
        run.encode(),
        conn,
        n,
        n % 100,
    )


def batch_body(conn: int, n: int, run: str) -> bytes:
    head = b'{"id":"%s-%d-%d-' % (run.encode(), conn, n)
    parts = [
        head + b'%d","customer":"c%d","meter":"api_calls","value":1}' % (i, i % 100)
        for i in range(BATCH)
    ]
    return b"[" + b",".join(parts) + b"]"


async def _load(
    ports: list[int],
    key: str,
    make: Callable[..., bytes],
    conns: int,
    secs: float,
    server: int | None,
) -> Load:
    run = uuid.uuid4().hex[:8]
    window = Window.after(secs, warmup=0.5)
    head = b"POST /v1/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n" % key.encode()

    def request(conn: int, n: int) -> bytes:
        payload = make(conn, n, run)
        return head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
            len(payload),
            payload,
        )

    async def measure_server() -> float:
        await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
        before = group_cpu_s(server) if server else 0.0
        await asyncio.sleep(max(0.0, window.until - time.perf_counter()))
        return group_cpu_s(server) - before if server else 0.0

    server_cpu, result = await asyncio.gather(
        measure_server(),
        hammer_async("127.0.0.1", ports, request, window=window, connections=conns),
    )
    return Load(
        result.requests,
        secs,
        result.cpu_seconds,
        result.latencies,
        dict(result.status_counts),
        server_cpu,
    )


def load(
    port: int | list[int],
    key: str,
    make: Callable[..., bytes],
    conns: int,
    secs: float,
    server: int | None = None,
) -> Load:
    """A closed-loop run, its connections spread evenly over `port` when it is a list of
    servers' ports; `server` is the process group whose CPU to measure."""
    import uvloop

    ports = port if isinstance(port, list) else [port]
    return uvloop.run(_load(ports, key, make, conns, secs, server))


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group `pgid` (Linux /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process went away
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def paced(
    port: int, key: str, make: Callable[..., bytes], rate: int, secs: float, server: int
) -> tuple[OpenLoopResult, float]:
    """An open-loop run at `rate` requests/s; and the server's CPU seconds over it."""
    run = uuid.uuid4().hex[:8]
    headers = {"Authorization": f"Bearer {key}"}
    total = int(rate * secs)
    reqs = [
        encode_request("POST", "/v1/events", make(0, n, run), headers=headers) for n in range(total)
    ]
    before = group_cpu_s(server)
    result = offer("127.0.0.1", port, reqs, rate=rate, seconds=secs, connections=OPEN_CONNECTIONS)
    return result, group_cpu_s(server) - before


def tenant_key(postgres: str) -> str:
    """A fresh tenant with the bench catalog; returns its ingest key."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    with open_pool(postgres, max_size=1) as pool:
        tenant = PostgresTenantRepository(pool).create_tenant(name)
        PostgresCatalogRepository(pool).apply(tenant.id, parse_catalog(CATALOG))
        return PostgresTenantRepository(pool).create_key(name, ["ingest"])[1]


@contextmanager
def fresh_ingest(
    ctx: BenchContext, home: Path, server: str = "uvicorn"
) -> Iterator[tuple[int, int]]:
    """Ingest on a broker of its own, started for this run: (port, process group). The embedded
    broker slows down with the record batches it holds (devstack/meterline_devstack/broker.py), so a
    fresh one per run keeps each run independent of what ran before it (earlier runs, and the
    modules before this one)."""
    broker, bootstrap = broker_process(home / "broker")
    broker.start()
    try:
        ingest, port = ingest_process(ctx, home, bootstrap, server=server)
        assert ingest.pid is not None
        try:
            yield port, ingest.pid
        finally:
            ingest.stop()
    finally:
        broker.stop()


def ingest_process(
    ctx: BenchContext,
    home: Path,
    bootstrap: str,
    topic: str | None = None,
    server: str = "uvicorn",
) -> tuple[ManagedProcess, int]:
    """An ingest process producing to `topic` (else to a new topic of its own): (it, its port).
    `server` "granian" serves the same ASGI app with granian (`bench/granian_ingest.py`)."""
    if topic is None:
        topic = f"bench.ingest.{uuid.uuid4().hex[:8]}"
        ensure_topics(bootstrap, [topic], 4)
    port = free_port()
    env = {
        "METERLINE_DATABASE_URL": ctx.urls["postgres"],
        "METERLINE_REDIS_URL": ctx.urls["redis"],
        "METERLINE_KAFKA_BOOTSTRAP": bootstrap,
        "METERLINE_KAFKA_TOPIC": topic,
        "METERLINE_INGEST_PORT": str(port),
        "METERLINE_INGEST_DEDUPE_WINDOW_S": "120",
        "METERLINE_INGEST_TENANT_RATE": "10000000",
        "METERLINE_LOG_LEVEL": "warning",
        "METERLINE_HOME": str(home),
    }
    argv = [sys.executable, "-m", "ingest"] if server == "uvicorn" else granian_argv(port)
    return _process(f"ingest-{port}", argv, home, port, env), port


def granian_argv(port: int) -> list[str]:
    """Granian on one worker and one runtime thread (ingest's own process shape), uvloop."""
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host",
        "127.0.0.1", "--port", str(port), "--workers", "1", "--runtime-threads", "1",
        "--loop", "uvloop", "--http", "1", "--no-ws", "--log-level", "warning",
        "--no-access-log", "bench.granian_ingest:app",
    ]  # fmt: skip


def _bare(home: Path) -> tuple[ManagedProcess, int]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.bench_ingest", "bare", str(port)]
    return _process("bare-asgi", argv, home, port, {}), port


def _process(
    name: str, argv: list[str], home: Path, port: int, env: dict[str, str]
) -> ManagedProcess:
    proc = ManagedProcess(
        name, argv, home / f"{name}.log", lambda: port_open(port), env=env, cwd=ROOT
    )
    proc.start()
    return proc


def run(ctx: BenchContext) -> list[Figure]:
    secs = 1.5 if ctx.quick else 3.0
    # The run's own home (removed after the run unless --keep) holds the servers' logs.
    home = Path(ctx.extra.get("home", ROOT / ".meterline")) / "bench-ingest"
    key = tenant_key(ctx.urls["postgres"])
    bare, bare_port = _bare(home)
    assert bare.pid is not None
    try:
        return _measure(ctx, secs, key, home, (bare_port, bare.pid))
    finally:
        bare.stop()


def _measure(
    ctx: BenchContext, secs: float, key: str, home: Path, bare: tuple[int, int]
) -> list[Figure]:
    """`bare` is (port, process group) of the bare app; each run has an ingest of its own."""
    results: dict[str, list[Load]] = {}
    opened: dict[str, list[tuple[OpenLoopResult, float]]] = {}
    for _ in range(ctx.runs):
        with fresh_ingest(ctx, home) as ingest:
            for name, (port, group), make, conns in (
                ("single", ingest, single_body, SINGLE_CONNECTIONS),
                ("bare_single", bare, single_body, SINGLE_CONNECTIONS),
                ("batch", ingest, batch_body, BATCH_CONNECTIONS),
                ("bare_batch", bare, batch_body, BATCH_CONNECTIONS),
            ):
                results.setdefault(name, []).append(load(port, key, make, conns, secs, group))
            for name, make, rate in (
                ("single", single_body, SINGLE_RATE),
                ("batch", batch_body, BATCH_RATE),
            ):
                opened.setdefault(name, []).append(
                    paced(ingest[0], key, make, rate, secs, ingest[1])
                )
    return _figures(results) + _open_figures(opened)


def _figures(r: dict[str, list[Load]]) -> list[Figure]:
    def fig(name: str, key: str, fn: Callable[[Load], float], unit: str, **kw: Any) -> Figure:
        return Figure.of(name, [fn(x) for x in r[key]], unit, **kw)

    per_batch: Callable[[Load], float] = lambda x: x.rps * BATCH  # noqa: E731
    statuses = {k: sorted({s for x in v for s in x.statuses}) for k, v in r.items()}
    return [
        fig("bare.single_rps", "bare_single", lambda x: x.rps, "req/s"),
        fig("bare.batch100_events", "bare_batch", per_batch, "events/s"),
        fig(
            "ingest.single_rps",
            "single",
            lambda x: x.rps,
            "req/s",
            ceiling="bare.single_rps",
            target=">= 4000",
            note=f"statuses {statuses['single']}",
        ),
        fig("ingest.single_p50", "single", lambda x: x.pct(0.5), "ms"),
        fig("ingest.single_p99", "single", lambda x: x.pct(0.99), "ms", target="<= 20"),
        fig(
            "ingest.batch100_events",
            "batch",
            per_batch,
            "events/s",
            ceiling="bare.batch100_events",
            target=">= 100000",
            note=f"statuses {statuses['batch']}",
        ),
        fig("ingest.batch100_p50", "batch", lambda x: x.pct(0.5), "ms"),
        fig("ingest.batch100_p99", "batch", lambda x: x.pct(0.99), "ms", target="<= 50"),
        fig(
            "ingest.single_cpu_per_request",
            "single",
            lambda x: x.server_cpu_seconds / max(1, x.requests) * 1e6,
            "us",
            note="ingest's CPU (all its processes and threads) per single-event request",
        ),
        fig(
            "ingest.batch100_cpu_per_event",
            "batch",
            lambda x: x.server_cpu_seconds / max(1, x.requests * BATCH) * 1e6,
            "us",
            note="ingest's CPU per event in 100-event requests",
        ),
        fig(
            "loadgen.cpu_single",
            "single",
            lambda x: x.cpu_seconds / x.seconds,
            "cores",
            note="load generator's own CPU during the ingest single run (2-core machine)",
        ),
        fig("loadgen.cpu_batch", "batch", lambda x: x.cpu_seconds / x.seconds, "cores"),
    ]


def _open_figures(r: dict[str, list[tuple[OpenLoopResult, float]]]) -> list[Figure]:
    """Open-loop figures: latency from each request's due time at the target rates."""

    def fig(
        name: str, key: str, fn: Callable[[OpenLoopResult, float], float], unit: str, **kw: Any
    ) -> Figure:
        return Figure.of(name, [fn(result, cpu) for result, cpu in r[key]], unit, **kw)

    def statuses(key: str) -> str:
        return f"statuses {sorted({s for x, _ in r[key] for s in x.statuses})}"

    def ms(q: float) -> Callable[[OpenLoopResult, float], float]:
        return lambda x, _c: x.percentile(q) * 1000

    s, b = f"_at_{SINGLE_RATE}", f"_at_{BATCH_RATE}"
    return [
        fig(
            f"ingest.single_rps{s}",
            "single",
            lambda x, _c: x.achieved_rate,
            "req/s",
            note=f"open loop, {SINGLE_RATE} req/s offered over {OPEN_CONNECTIONS} connections; "
            + statuses("single"),
        ),
        fig(f"ingest.single_p50{s}", "single", ms(0.5), "ms", note="from each request's due time"),
        fig(f"ingest.single_p99{s}", "single", ms(0.99), "ms", target="<= 20"),
        fig(
            f"ingest.single_cpu_per_request{s}",
            "single",
            lambda x, c: c / max(1, x.finished) * 1e6,
            "us",
        ),
        fig(
            f"ingest.batch100_events{b}",
            "batch",
            lambda x, _c: x.achieved_rate * BATCH,
            "events/s",
            note=f"open loop, {BATCH_RATE} 100-event req/s offered over "
            f"{OPEN_CONNECTIONS} connections; " + statuses("batch"),
        ),
        fig(f"ingest.batch100_p50{b}", "batch", ms(0.5), "ms", note="from each request's due time"),
        fig(f"ingest.batch100_p99{b}", "batch", ms(0.99), "ms", target="<= 50"),
        fig(
            f"ingest.batch100_cpu_per_event{b}",
            "batch",
            lambda x, c: c / (max(1, x.finished) * BATCH) * 1e6,
            "us",
        ),
        fig(f"loadgen.cpu_single{s}", "single", lambda x, _c: x.cpu_cores, "cores"),
    ]


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ceiling: read the body, parse the same JSON, answer 202 like ingest does."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    doc = orjson.loads(body)
    reply = orjson.dumps({"accepted": len(doc) if isinstance(doc, list) else 1, "duplicates": 0})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(reply))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": reply})


if __name__ == "__main__" and sys.argv[1:2] == ["bare"]:
    import uvicorn

    uvicorn.run(
        bare_app,
        host="127.0.0.1",
        port=int(sys.argv[2]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
