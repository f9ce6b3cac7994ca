"""Ingest's HTTP server: today's (uvicorn with httptools, POST /v1/events taken by
`ingest.protocol`) against granian (a Rust HTTP server) serving the same ASGI app.

Each run starts one ingest of each kind on a broker of its own and loads them in turn, today's
first, so a slow phase of the machine hits both: single-event requests/s, p99 and ingest's CPU
per request at 64 connections, and the same for 100-event batches. The ratio figures
(`granian / today`) are what to read; absolute rates swing with the machine.
"""

from __future__ import annotations

from pathlib import Path

from bench.bench_ingest import (
    BATCH,
    BATCH_CONNECTIONS,
    ROOT,
    SINGLE_CONNECTIONS,
    Load,
    batch_body,
    fresh_ingest,
    load,
    single_body,
    tenant_key,
)
from bench.harness import BenchContext, Figure

SERVERS = ("uvicorn", "granian")


def run(ctx: BenchContext) -> list[Figure]:
    secs = 1.5 if ctx.quick else 3.0
    home = Path(ctx.extra.get("home", ROOT / ".meterline")) / "bench-http-server"
    key = tenant_key(ctx.urls["postgres"])
    loads: dict[tuple[str, str], list[Load]] = {}
    for _ in range(ctx.runs):
        for server in SERVERS:
            with fresh_ingest(ctx, home, server) as (port, group):
                for kind, make, conns in (
                    ("single", single_body, SINGLE_CONNECTIONS),
                    ("batch", batch_body, BATCH_CONNECTIONS),
                ):
                    found = load(port, key, make, conns, secs, group)
                    loads.setdefault((server, kind), []).append(found)
    return [f for server in SERVERS for f in _figures(server, loads)] + _ratios(loads)


def _figures(server: str, loads: dict[tuple[str, str], list[Load]]) -> list[Figure]:
    single, batch = loads[(server, "single")], loads[(server, "batch")]
    name = f"http_server.{server}"
    return [
        Figure.of(f"{name}.single_rps", [x.rps for x in single], "req/s", note=_codes(single)),
        Figure.of(f"{name}.single_p99", [x.pct(0.99) for x in single], "ms"),
        Figure.of(f"{name}.single_cpu", [_cpu(x, 1) for x in single], "us", note="per request"),
        Figure.of(f"{name}.batch100_events", [x.rps * BATCH for x in batch], "events/s"),
        Figure.of(f"{name}.batch100_cpu", [_cpu(x, BATCH) for x in batch], "us", note="per event"),
    ]


def _ratios(loads: dict[tuple[str, str], list[Load]]) -> list[Figure]:
    def ratio(kind: str, fn: str) -> list[float]:
        pairs = zip(loads[("granian", kind)], loads[("uvicorn", kind)], strict=True)
        if fn == "rps":
            return [g.rps / max(u.rps, 1e-9) for g, u in pairs]
        return [_cpu(g, 1) / max(_cpu(u, 1), 1e-9) for g, u in pairs]

    return [
        Figure.of("http_server.granian_over_today.single_rps", ratio("single", "rps"), "x"),
        Figure.of("http_server.granian_over_today.single_cpu", ratio("single", "cpu"), "x"),
        Figure.of("http_server.granian_over_today.batch100_rps", ratio("batch", "rps"), "x"),
    ]


def _cpu(x: Load, events: int) -> float:
    return x.server_cpu_seconds / max(1, x.requests * events) * 1e6


def _codes(xs: list[Load]) -> str:
    return f"statuses {sorted({s for x in xs for s in x.statuses})}"
