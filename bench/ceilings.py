"""Stage ceilings on this machine: what each stage can do with nothing of Meterline around it.

Every Meterline figure is read as a ratio to one of these (see `bench.harness.CEILINGS`):
- HTTP: a bare ASGI endpoint (`bench/bare_asgi.py`, uvicorn, one worker) parsing the same JSON,
  driven by `bench.loadgen` with single events and 100-event batches;
- Kafka: confluent-kafka produce (idempotent, acks=all, Meterline's producer settings) and
  consume-and-decode (`decode_event`) with `fetch.queue.backoff.ms=1`;
- Postgres: COPY of ledger rows into a table shaped like `usage_events`;
- Redis: pipelined HINCRBY writes, 1,000 commands per round trip.

The bare clients are the subject of measurement here, which is why this module uses
confluent_kafka directly (with `meterline.kafka`'s settings) instead of going through a service.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from bench import workload
from bench.harness import BenchContext, Figure, rate, repeat
from bench.loadgen import LoadResult, encode_request, hammer
from meterline.events import UsageEvent, decode_event, encode_event
from meterline.kafka import consumer_config, ensure_topics, producer_config
from meterline.postgres import connect
from meterline.redis import connect as redis_connect
from meterline_devstack.process import ManagedProcess, free_port, port_open

ROOT = Path(__file__).resolve().parents[1]
BATCH = 100


def run(ctx: BenchContext) -> list[Figure]:
    """Every ceiling, in stage order."""
    return [
        *http_ceilings(ctx),
        *kafka_ceilings(ctx),
        pg_copy_ceiling(ctx),
        redis_pipeline_ceiling(ctx),
    ]


def http_ceilings(ctx: BenchContext) -> list[Figure]:
    port = free_port()
    server = _bare_server(port, Path(str(ctx.extra.get("home", ROOT / ".meterline"))))
    server.start(timeout=30)
    try:
        return [_http_single(ctx, port), _http_batch(ctx, port)]
    finally:
        server.stop()


def _bare_server(port: int, home: Path) -> ManagedProcess:
    argv = [sys.executable, "-m", "uvicorn", "bench.bare_asgi:app", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    log = home / "logs" / "bench-bare-asgi.log"
    return ManagedProcess("bare-asgi", argv, log, lambda: port_open(port), cwd=ROOT)


def _http_single(ctx: BenchContext, port: int) -> Figure:
    events = workload.make_events(1000)
    reqs = [encode_request("POST", "/v1/events", workload.body(e)) for e in events]
    total = ctx.scale(20_000)
    results = [hammer("127.0.0.1", port, reqs, total=total, connections=32) for _ in _runs(ctx)]
    return _http_figure("ceiling.http_single", results, 1, "bare ASGI, 1 event/request")


def _http_batch(ctx: BenchContext, port: int) -> Figure:
    events = workload.make_events(BATCH * 50)
    bodies = [workload.body(b) for b in workload.batches(events, BATCH)]
    reqs = [encode_request("POST", "/v1/events", b) for b in bodies]
    total = ctx.scale(2_000)
    results = [hammer("127.0.0.1", port, reqs, total=total, connections=16) for _ in _runs(ctx)]
    return _http_figure("ceiling.http_batch", results, BATCH, f"bare ASGI, {BATCH} events/request")


def _runs(ctx: BenchContext) -> range:
    return range(ctx.runs)


def _http_figure(name: str, results: list[LoadResult], per: int, note: str) -> Figure:
    rates = sorted(r.rate * per for r in results)
    bad = sum(r.requests - r.status_counts[202] for r in results)
    cpu = max(r.cpu_share for r in results)
    note = f"{note}; loadgen CPU {cpu:.0%} of machine" + (f"; {bad} non-202" if bad else "")
    median = rates[len(rates) // 2]
    return Figure(name, median, "events/s", rates[-1] - rates[0], len(rates), note=note)


def _kafka_events(count: int) -> list[UsageEvent]:
    now = int(datetime.now(UTC).timestamp() * 1000)
    raw = workload.make_events(count, now_ms=now)
    return [
        UsageEvent(1, e["id"], e["customer"], e["meter"], float(e["value"]), e["timestamp"], now)
        for e in raw
    ]


def kafka_ceilings(ctx: BenchContext) -> list[Figure]:
    bootstrap = ctx.urls["kafka"]
    topic = f"bench.ceiling.{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic], partitions=4)
    count = ctx.scale(200_000)
    messages = [(encode_event(e), e.key) for e in _kafka_events(count + 1)]

    def produce() -> float:
        producer = Producer(producer_config(bootstrap))
        _produce(producer, topic, *messages[0])
        producer.flush(30)

        def send() -> None:
            for value, key in messages:
                _produce(producer, topic, value, key)
            producer.flush(60)

        return rate(count, send)

    produced, spread = repeat(produce, ctx.runs)
    note = "idempotent, acks=all, linger 5 ms, no delivery callback"
    figures = [Figure("ceiling.kafka_produce", produced, "msg/s", spread, ctx.runs, note=note)]
    consumed, cspread = repeat(lambda: _consume_rate(bootstrap, topic, count), ctx.runs)
    note = f"decode_event on each; fetch.queue.backoff.ms=1; {count:,} msgs per run"
    figures.append(Figure("ceiling.kafka_consume", consumed, "msg/s", cspread, ctx.runs, note=note))
    return figures


def _produce(producer: Producer, topic: str, value: bytes, key: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.01)


def _consume_rate(bootstrap: str, topic: str, count: int) -> float:
    """Read `count` messages from the start of `topic` (assigned, no group join) and decode them."""
    consumer = Consumer(consumer_config(bootstrap, f"bench-{uuid.uuid4().hex[:8]}"))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    consumer.consume(1, 10.0)
    seen = 0

    def drain() -> None:
        nonlocal seen
        while seen < count:
            for msg in consumer.consume(1000, 1.0):
                if msg.error() is None:
                    decode_event(msg.value())
                    seen += 1

    try:
        return rate(count, drain)
    finally:
        consumer.close()


def pg_copy_ceiling(ctx: BenchContext) -> Figure:
    """COPY ledger rows (the columns of `usage_events`) into a scratch table, one COPY per run."""
    count = ctx.scale(200_000)
    now = datetime.now(UTC)
    rows = [
        (1, e["id"], now.date(), e["customer"], e["meter"], now, e["value"], now)
        for e in workload.make_events(count)
    ]
    table = f"bench_copy_{uuid.uuid4().hex[:8]}"
    with connect(ctx.urls["postgres"], autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (LIKE usage_events INCLUDING DEFAULTS)")
        conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (tenant_id, event_id, day)")

        def copy() -> float:
            conn.execute(f"TRUNCATE {table}")
            columns = "tenant_id, event_id, day, customer, meter, ts, value, received_at"

            def write() -> None:
                with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as cp:
                    for row in rows:
                        cp.write_row(row)

            return rate(count, write)

        try:
            value, spread = repeat(copy, ctx.runs)
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    note = f"{count:,} rows per COPY, primary key on (tenant, id, day)"
    return Figure("ceiling.pg_copy", value, "rows/s", spread, ctx.runs, note=note)


def redis_pipeline_ceiling(ctx: BenchContext) -> Figure:
    """HINCRBY per event, 1,000 commands per pipeline round trip, no MULTI."""
    count = ctx.scale(200_000)
    client = redis_connect(ctx.urls["redis"])
    events = workload.make_events(count)
    prefix = f"bench:ceiling:{uuid.uuid4().hex[:8]}"

    def write() -> None:
        for start in range(0, count, 1000):
            pipe = client.pipeline(transaction=False)
            for e in events[start : start + 1000]:
                pipe.hincrby(f"{prefix}:{e['customer']}", e["meter"], e["value"])
            pipe.execute()

    try:
        value, spread = repeat(lambda: rate(count, write), ctx.runs)
    finally:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    return Figure("ceiling.redis_pipeline", value, "ops/s", spread, ctx.runs, note="HINCRBY")
