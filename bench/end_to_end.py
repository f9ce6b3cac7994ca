"""End to end: events from HTTP (ingest) to Postgres rollups and the Redis view.

Each run sends `n` events in 100-event batches on 16 keep-alive connections through the
ledger-keeping load generator (so every event is retried until acknowledged, as a client must),
then waits until the rollups of a tenant of its own count all of them and the Redis view
agrees. Rate = n / (first send -> last event counted). The ratio is to the slowest stage ceiling.
"""

from __future__ import annotations

import os
import time
import uuid

from bench.harness import SLOWEST, BenchContext, Figure, repeat
from bench.loadgen import cpu_time, run_loop
from bench.reliability.ledger import Ledger
from bench.reliability.observe import Observer, view_window, wait_until
from bench.reliability.traffic import Plan, Traffic
from bench.runner import prepare_tenant
from bench.workload import METERS


def run(ctx: BenchContext) -> list[Figure]:
    if "ingest" not in ctx.urls or "aggregator" not in ctx.urls:
        raise RuntimeError("needs the ingest and aggregator services")
    count = ctx.scale(100_000)
    observer = Observer(ctx.urls["postgres"], ctx.urls["redis"])
    cpu: list[float] = []
    value, spread = repeat(lambda: _one_run(ctx, observer, count, cpu), ctx.runs)
    note = (
        f"{count:,} events/run, batches of 100 on 16 connections, HTTP -> Kafka -> PG + Redis; "
        f"loadgen CPU {max(cpu):.0%} of machine"
    )
    return [Figure("pipeline.end_to_end", value, "events/s", spread, ctx.runs, SLOWEST, note=note)]


def _one_run(ctx: BenchContext, observer: Observer, count: int, cpu: list[float]) -> float:
    tenant = prepare_tenant(ctx.urls["postgres"], f"bench-e2e-{uuid.uuid4().hex[:6]}")
    ledger = Ledger(tenant["tenant"], [f"cust_{i}" for i in range(50)], METERS)
    host, port = ctx.urls["ingest"].removeprefix("http://").split(":")
    traffic = Traffic(
        ledger, host, int(port), tenant["keys"]["ingest"], Plan(count, connections=16)
    )
    start, cpu0 = time.monotonic(), cpu_time()
    run_loop(traffic.run())
    cpu.append((cpu_time() - cpu0) / max(time.monotonic() - start, 1e-9) / (os.cpu_count() or 1))
    tenant_id, want = tenant["tenant_id"], sum(t.value for t in ledger.expected().values())
    keys = [(c, m) for c in ledger.customers for m in ledger.meters]
    window = view_window(int(time.time() * 1000) - 60_000, int(time.time() * 1000))

    def in_redis() -> bool:
        view = observer.redis_view(tenant_id, keys, *window)
        return view is not None and abs(sum(view.values()) - want) < 1e-6

    if (
        wait_until(lambda: (observer.counted(tenant_id) or 0) >= ledger.acked_count, 600, 0.05)
        is None
    ):
        raise RuntimeError("the rollups did not count every acknowledged event within 600 s")
    if wait_until(in_redis, 120, 0.05) is None:
        raise RuntimeError("the Redis view did not reach the acknowledged total within 120 s")
    return ledger.acked_count / (time.monotonic() - start)
