"""Aggregator: sustained events/s from a pre-filled topic into Postgres and Redis, its ratio to
the bare consume-and-decode rate of the same topic (two figures: `decode_event` per message, as
the issue's ceiling was first measured, and the aggregator's own column decode, which bounds
its consumer thread), and event-to-Redis freshness p50/p99 under a steady 10,000 events/s.
The sustained figures are the median of `--runs` runs, each by a new aggregator on a
pre-filled topic of its own (the spread says how far they differ). Events carry recent event
times, 500 customers, two meters. One `python -m aggregator` process; the CPU is shared with the
broker, Postgres and Redis (2 cores on the reference machine), so the CPU time the aggregator
process itself spends per event (all its threads, from /proc) is reported too: on a shared
machine it is a steadier figure than the rate. So is the CPU the embedded Postgres spends per
event meanwhile (the server and its backends): a batch's transaction runs in one backend, a
single process, so that figure bounds one aggregator's rate whatever the aggregator does."""

from __future__ import annotations

import math
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg
from confluent_kafka import Message

from aggregator.batch import decode_batch
from bench.harness import BenchContext, Figure
from meterline.catalog.model import Aggregation
from meterline.catalog.parse import parse_catalog
from meterline.catalog.repository import PostgresCatalogRepository
from meterline.clock import SystemClock
from meterline.events import UsageEvent, decode_event
from meterline.kafka import ensure_topics
from meterline.kafka.consumer import PositionedConsumer
from meterline.kafka.producer import EventPublisher
from meterline.postgres import open_pool
from meterline.redis import connect as redis_connect
from meterline.tenants import PostgresTenantRepository
from meterline.view import RedisUsageView
from meterline_devstack.process import ManagedProcess, free_port

FRESHNESS_RATE = 10_000
# Events per sustained run, at least five of the aggregator's 20,000-event batches even in
# --quick: the rate is timed from the first commit on, so a one-batch run measures nothing.
MIN_EVENTS = 100_000
FRESHNESS_SECONDS = 30


def run(ctx: BenchContext) -> list[Figure]:
    n = max(ctx.scale(200_000), MIN_EVENTS)
    topics = [filled_topic(ctx, n) for _ in range(ctx.runs)]
    tag, topic, tenant = topics[0]
    bare = _bare_rate(ctx.urls["kafka"], topic, n, lambda ms: [decode_event(m.value()) for m in ms])
    bare_columns = _bare_rate(ctx.urls["kafka"], topic, n, lambda ms: decode_batch(ms, topic))
    runs = [aggregator_rate(ctx, t, tp, n) for t, tp, _ in topics]  # each on a topic of its own
    rates, cpu, pg = zip(*runs, strict=True)
    pg_cpu = [us for us in pg if us is not None]  # none when Postgres is not the stack's own
    p50, p99 = _freshness(ctx, tag, topic, tenant, n)
    figures = [
        Figure(
            "aggregator.consume_decode",
            bare,
            "events/s",
            note="bare consume + decode_event per message",
        ),
        Figure(
            "aggregator.consume_decode_columns",
            bare_columns,
            "events/s",
            note="bare consume + the aggregator's column decode (decode_batch)",
        ),
        Figure.of(
            "aggregator.sustained",
            rates,
            "events/s",
            ceiling="aggregator.consume_decode_columns",
            target=">= 100000",
            note=f"{n} events, pre-filled topic, into PG and Redis",
        ),
        Figure.of(
            "aggregator.cpu_per_event",
            cpu,
            "µs",
            note="CPU of the aggregator process per event, during the sustained run",
        ),
        Figure(
            "aggregator.freshness_p50",
            p50,
            "ms",
            note=f"steady {FRESHNESS_RATE}/s, probes for {FRESHNESS_SECONDS} s, send to visible",
        ),
        Figure("aggregator.freshness_p99", p99, "ms", target="<= 1000"),
    ]
    if pg_cpu:
        figures.insert(
            4,
            Figure.of(
                "aggregator.postgres_cpu_per_event",
                pg_cpu,
                "µs",
                note="CPU of the Postgres server processes per event, during the sustained run",
            ),
        )
    return figures


def _tenant(url: str, tag: str) -> int:
    pool = open_pool(url, max_size=1)
    try:
        tid = PostgresTenantRepository(pool).create_tenant(f"bench-{tag}").id
        doc = {
            "meters": [
                {"key": "calls", "aggregation": "sum"},
                {"key": "peak", "aggregation": "max"},
            ]
        }
        PostgresCatalogRepository(pool).apply(tid, parse_catalog(doc))
        return tid
    finally:
        pool.close()


def _events(tenant: int, start: int, n: int, prefix: str) -> list[UsageEvent]:
    now = SystemClock().now_ms()
    return [
        UsageEvent(
            tenant,
            f"{prefix}{i:09d}",
            f"c{i % 500}",
            "calls" if i % 4 else "peak",
            float(i % 10),
            now - (i % 3_600_000),
            now,
        )
        for i in range(start, start + n)
    ]


def filled_topic(ctx: BenchContext, n: int) -> tuple[str, str, int]:
    """(tag, topic, tenant) of a new topic holding `n` events of a new tenant (and its
    dead-letter topic): each run counts new events, never the ledger's duplicate path."""
    tag = uuid.uuid4().hex[:8]
    tenant = _tenant(ctx.urls["postgres"], tag)
    topic = f"bench.{tag}.usage"
    ensure_topics(ctx.urls["kafka"], [topic, f"bench.{tag}.dlq"], 4)
    prefill(ctx.urls["kafka"], topic, tenant, n)
    return tag, topic, tenant


def prefill(bootstrap: str, topic: str, tenant: int, n: int) -> None:
    pub = EventPublisher(bootstrap, topic, **{"linger.ms": 20})
    for i in range(0, n, 20_000):
        pub.publish(_events(tenant, i, min(20_000, n - i), "p"), timeout=120)
    pub.close()


def _bare_rate(
    bootstrap: str, topic: str, n: int, decode: Callable[[list[Message]], object]
) -> float:
    """Messages/s of a consumer reading `n` messages of `topic` and passing each poll's
    messages to `decode`, from the first message on."""
    consumer = PositionedConsumer(
        bootstrap,
        f"bench-bare-{uuid.uuid4().hex[:6]}",
        topic,
        lambda ps: dict.fromkeys(ps),
        lambda _ps: None,
    )
    seen, started = 0, None
    while seen < n:
        messages = consumer.poll(10_000, 1.0)
        if messages and started is None:
            started = time.perf_counter()
        decode(messages)
        seen += len(messages)
    consumer.close()
    return n / (time.perf_counter() - (started or time.perf_counter()))


def start_aggregator(
    ctx: BenchContext, tag: str, topic: str, group: str, **more: str
) -> ManagedProcess:
    """An aggregator on `topic` (view prefix `b<tag>`); `more`: further environment."""
    port = free_port()
    env = {
        **more,
        "METERLINE_DATABASE_URL": ctx.urls["postgres"],
        "METERLINE_REDIS_URL": ctx.urls["redis"],
        "METERLINE_KAFKA_BOOTSTRAP": ctx.urls["kafka"],
        "METERLINE_KAFKA_TOPIC": topic,
        "METERLINE_KAFKA_DLQ_TOPIC": f"bench.{tag}.dlq",
        "METERLINE_REDIS_KEY_PREFIX": f"b{tag}",
        "METERLINE_AGGREGATOR_PORT": str(port),
        "METERLINE_AGGREGATOR_GROUP_ID": group,
    }
    log = Path(os.environ.get("METERLINE_HOME", ".meterline")) / "logs" / f"bench-agg-{tag}.log"
    import httpx

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    proc = ManagedProcess("aggregator", [sys.executable, "-m", "aggregator"], log, ready, env=env)
    proc.start()
    return proc


def consumed(conn: psycopg.Connection[tuple[object, ...]], group: str) -> int:
    """Events the group has committed. One open connection serves every poll: a connection per
    poll would fork a Postgres backend 50 times a second, CPU taken from what is measured."""
    row = conn.execute(
        "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE consumer_group = %s",
        (group,),
    ).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]  # a numeric sum


def aggregator_rate(
    ctx: BenchContext, tag: str, topic: str, n: int, **more: str
) -> tuple[float, float, float | None]:
    """(events/s, CPU µs per event of the aggregator process and of the Postgres server, None
    when Postgres is not the stack's own process), from the aggregator's first commit on.
    `more`: further environment of the aggregator."""
    group = f"bench-agg-{tag}"
    proc = start_aggregator(ctx, tag, topic, group, **more)
    postgres = ctx.extra["stack"].processes.get("postgres")
    conn = psycopg.connect(ctx.urls["postgres"], autocommit=True)
    try:
        first, t0, cpu0, pg0 = 0, 0.0, 0.0, {}
        while (done := consumed(conn, group)) < n:
            if done and not first:
                first, t0, cpu0 = done, time.perf_counter(), _cpu_s(proc.pid)
                pg0 = _tree_cpu_s(postgres.pid) if postgres else {}
            time.sleep(0.02)
        elapsed, cpu = time.perf_counter() - t0, _cpu_s(proc.pid) - cpu0
        counted = max(1, n - first)
        pg_cpu = None
        if postgres:
            pg1 = _tree_cpu_s(postgres.pid)
            pg_cpu = sum(s - pg0.get(pid, 0.0) for pid, s in pg1.items()) / counted * 1e6
        return (n - first) / elapsed, cpu / counted * 1e6, pg_cpu
    finally:
        conn.close()
        proc.stop()


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process and all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pid: int | None) -> dict[int, float]:
    """User + system CPU seconds of a process and each of its descendants, by pid. A process
    that starts between two readings counts whole; one that exits in between is missed (the
    bench's own short queries)."""
    if pid is None:
        return {}
    root = psutil.Process(pid)
    found: dict[int, float] = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        found[p.pid] = t.user + t.system
    return found


def _freshness(
    ctx: BenchContext, tag: str, topic: str, tenant: int, prefilled: int
) -> tuple[float, float]:
    group = f"bench-fresh-{tag}"
    proc = start_aggregator(ctx, tag, topic, group)
    view = RedisUsageView(redis_connect(ctx.urls["redis"]), f"b{tag}")
    stop = threading.Event()
    load = threading.Thread(target=_steady, args=(ctx.urls["kafka"], topic, tenant, stop))
    try:
        time.sleep(3)  # the aggregator catches up with the pre-filled topic first
        with psycopg.connect(ctx.urls["postgres"], autocommit=True) as conn:
            while consumed(conn, group) < prefilled:
                time.sleep(0.1)
        load.start()
        time.sleep(2)  # measure the steady state, not the steady stream's start
        samples = _probe(ctx.urls["kafka"], topic, tenant, view)
    finally:
        stop.set()
        if load.is_alive():
            load.join()
        proc.stop()
    samples.sort()
    return statistics.median(samples), samples[max(0, math.ceil(len(samples) * 0.99) - 1)]


def _steady(bootstrap: str, topic: str, tenant: int, stop: threading.Event) -> None:
    pub = EventPublisher(bootstrap, topic)
    i, started = 0, time.perf_counter()
    while not stop.is_set():
        pub.publish(_events(tenant, i, 500, "s"))
        i += 500
        ahead = i / FRESHNESS_RATE - (time.perf_counter() - started)
        if ahead > 0:
            time.sleep(ahead)
    pub.close()


def _probe(bootstrap: str, topic: str, tenant: int, view: RedisUsageView) -> list[float]:
    pub = EventPublisher(bootstrap, topic)
    now = SystemClock().now_ms()
    # A new idempotent producer's first send waits for its producer id (~0.5 s on the embedded
    # broker): that is the probe's start-up, not the pipeline's latency.
    pub.publish([UsageEvent(tenant, "probe-warmup", "probe-warmup", "calls", 1.0, now, now)])
    samples: list[float] = []
    deadline = time.perf_counter() + FRESHNESS_SECONDS
    k = 0
    while time.perf_counter() < deadline:
        k += 1
        now = SystemClock().now_ms()
        event = UsageEvent(tenant, f"probe{k}", f"probe{k}", "calls", 1.0, now, now)
        sent = time.perf_counter()
        pub.publish([event])
        while (
            view.usage(
                tenant, event.customer, "calls", Aggregation.SUM, now - 3_600_000, now + 3_600_000
            )
            < 1
        ):
            time.sleep(0.002)
        samples.append((time.perf_counter() - sent) * 1000)
        time.sleep(0.05)
    pub.close()
    return samples
