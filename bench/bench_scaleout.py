"""Scale-out: what a second process adds, for the aggregator and for ingest, on one machine.

`aggregator.scaleout_ratio` is the rate of 2 `python -m aggregator` processes in one consumer
group over the rate of 1, each run on a pre-filled topic of its own (4 partitions, same size,
same Postgres and Redis). Both processes are started at once, so they join the group together;
the rate is timed over the steady middle of the run (from 10% to 90% of the events committed),
so the group join and the last partition's tail count in neither. The note gives each
process's share of the counted events: a ratio near 1 with a 50/50 share means the processes
compete for the same cores or the same Postgres, not that one sat idle.

The 1-process runs also measure what Postgres writes per event counted, for sizing
(deploy/README.md): `postgres.wal_bytes_per_event` (WAL generated, from
`pg_current_wal_lsn()`) and `postgres.storage_bytes_per_event` (growth of the database:
ledger, event ids, rollups and their indexes). Both depend on the workload's shape: here 500
customers x 2 meters over one hour of event times, about 10 events per rollup row.

`ingest.scaleout_ratio` is the rate of 2 `python -m ingest` processes over 1, closed loop,
100-event batches, the load generator's connections spread evenly over the processes' ports,
both on the same fresh broker and topic.

On the 2-core reference machine the broker, Postgres, Redis and the load generator share the
cores with what is measured, so a ratio well under 2 is expected there: it says how much of
a core a second process finds free, and the same module on a bigger machine says how far
adding replicas goes before the shared services are the limit.
"""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

from bench import bench_aggregator as agg
from bench import bench_ingest as ing
from bench.harness import BenchContext, Figure
from meterline.kafka import ensure_topics
from meterline_devstack.broker import broker_process
from meterline_devstack.process import ManagedProcess

PROCESSES = (1, 2)
# Enough events that the steady window (10% to 90%) lasts seconds even for two processes.
MIN_EVENTS = 200_000
COUNTED = re.compile(r'^meterline_aggregator_events_total\{outcome="counted"\} (\S+)$', re.M)


def run(ctx: BenchContext) -> list[Figure]:
    return _aggregator_figures(ctx) + _ingest_figures(ctx)


def _aggregator_figures(ctx: BenchContext) -> list[Figure]:
    n = max(ctx.scale(600_000), MIN_EVENTS)
    rates: dict[int, list[float]] = {k: [] for k in PROCESSES}
    shares: list[float] = []
    written: list[tuple[float, float]] = []
    for _ in range(ctx.runs):
        for k in PROCESSES:
            tag, topic, _ = agg.filled_topic(ctx, n)  # a tenant of its own: new events
            before = _postgres_written(ctx.urls["postgres"])
            rate, share = _aggregators_rate(ctx, tag, topic, n, k)
            rates[k].append(rate)
            if k == 2:
                shares.append(share)
            else:
                after = _postgres_written(ctx.urls["postgres"])
                written.append(((after[0] - before[0]) / n, (after[1] - before[1]) / n))
    ratios = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
    note = f"{n} events, 4 partitions; busier process's share {max(shares):.0%}"
    return [
        Figure.of("aggregator.scaleout_1", rates[1], "events/s", note="1 process, steady window"),
        Figure.of("aggregator.scaleout_2", rates[2], "events/s", note="2 processes, one group"),
        Figure.of("aggregator.scaleout_ratio", ratios, "x", note=note),
        Figure.of("postgres.wal_bytes_per_event", [w for w, _ in written], "bytes"),
        Figure.of(
            "postgres.storage_bytes_per_event",
            [d for _, d in written],
            "bytes",
            note="database growth per event counted, indexes and rollups included",
        ),
    ]


def _postgres_written(postgres: str) -> tuple[int, int]:
    """(WAL position in bytes, database size in bytes) now."""
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # dirty pages counted in the size, not left in memory
        row = conn.execute(
            "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, pg_database_size(current_database())"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _aggregators_rate(
    ctx: BenchContext, tag: str, topic: str, n: int, k: int
) -> tuple[float, float]:
    """(events/s over the steady window, the busier process's share of the counted events)."""
    group = f"bench-scale-{tag}"
    with ThreadPoolExecutor(k) as pool:
        procs = list(pool.map(lambda _: agg.start_aggregator(ctx, tag, topic, group), range(k)))
    try:
        rate = _steady_rate(ctx.urls["postgres"], group, n)
        _wait_all(ctx.urls["postgres"], group, n)
        counted = [_counted(p) for p in procs]
        return rate, max(counted) / max(1.0, sum(counted))
    finally:
        for p in procs:
            p.stop()


def _steady_rate(postgres: str, group: str, n: int) -> float:
    """Events/s between 10% and 90% of `n` committed by `group`."""
    low, high = n // 10, n * 9 // 10
    start: tuple[float, int] | None = None
    with psycopg.connect(postgres, autocommit=True) as conn:
        while (done := agg.consumed(conn, group)) < high:
            if start is None and done >= low:
                start = (time.perf_counter(), done)
            time.sleep(0.02)
        end = time.perf_counter()
    assert start is not None, "the group committed nothing"
    return (done - start[1]) / (end - start[0])


def _wait_all(postgres: str, group: str, n: int) -> None:
    with psycopg.connect(postgres, autocommit=True) as conn:
        while agg.consumed(conn, group) < n:
            time.sleep(0.05)


def _counted(proc: ManagedProcess) -> float:
    """Events the aggregator process counted, from its /metrics."""
    port = proc.env["METERLINE_AGGREGATOR_PORT"] if proc.env else ""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = COUNTED.search(text)
    return float(found.group(1)) if found else 0.0


def _ingest_figures(ctx: BenchContext) -> list[Figure]:
    secs = 1.5 if ctx.quick else 3.0
    home = Path(ctx.extra.get("home", ing.ROOT / ".meterline")) / "bench-scaleout"
    key = ing.tenant_key(ctx.urls["postgres"])
    rates: dict[int, list[float]] = {k: [] for k in PROCESSES}
    for _ in range(ctx.runs):
        for k in PROCESSES:
            rates[k].append(_ingest_rate(ctx, home, key, k, secs))
    ratios = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
    conns = ing.BATCH_CONNECTIONS
    return [
        Figure.of("ingest.scaleout_1", rates[1], "events/s", note="1 process, 100-event batches"),
        Figure.of("ingest.scaleout_2", rates[2], "events/s", note="2 processes, same broker"),
        Figure.of("ingest.scaleout_ratio", ratios, "x", note=f"{conns} connections in all"),
    ]


def _ingest_rate(ctx: BenchContext, home: Path, key: str, k: int, secs: float) -> float:
    """Events/s of `k` ingest processes on one fresh broker and topic."""
    broker, bootstrap = broker_process(home / f"broker-{uuid.uuid4().hex[:6]}")
    broker.start()
    try:
        topic = f"bench.scaleout.{uuid.uuid4().hex[:8]}"
        ensure_topics(bootstrap, [topic], 4)
        procs = [ing.ingest_process(ctx, home, bootstrap, topic) for _ in range(k)]
        try:
            ports = [port for _, port in procs]
            result = ing.load(ports, key, ing.batch_body, ing.BATCH_CONNECTIONS, secs)
            return result.rps * ing.BATCH
        finally:
            for proc, _ in procs:
                proc.stop()
    finally:
        broker.stop()
