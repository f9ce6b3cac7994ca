"""Helpers of the aggregator's integration tests: a tenant, event streams with known totals,
and the aggregator as a real subprocess that can be SIGKILLed and restarted."""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from psycopg_pool import ConnectionPool

from meterline.catalog.aggregation import merge
from meterline.catalog.model import Aggregation
from meterline.catalog.parse import parse_catalog
from meterline.catalog.repository import PostgresCatalogRepository
from meterline.clock import SystemClock
from meterline.events import UsageEvent
from meterline.kafka.producer import EventPublisher
from meterline.redis import connect as redis_connect
from meterline.tenants import PostgresTenantRepository
from meterline.values import to_decimal
from meterline.view import RedisUsageView, SyncedView
from meterline.view.model import MINUTE_MS
from meterline_devstack.process import ManagedProcess, free_port

METERS = {
    "calls": Aggregation.SUM,
    "requests": Aggregation.COUNT,
    "peak": Aggregation.MAX,
    "seats": Aggregation.LATEST,
}
ROOT = Path(__file__).resolve().parents[2]


def setup_tenant(pool: ConnectionPool, name: str = "acme") -> int:
    tenant = PostgresTenantRepository(pool).create_tenant(name)
    doc = {"meters": [{"key": k, "aggregation": a.value} for k, a in METERS.items()]}
    PostgresCatalogRepository(pool).apply(tenant.id, parse_catalog(doc))
    return tenant.id


Expected = dict[
    tuple[str, str, int], tuple[Decimal | float, int]
]  # (customer, meter, minute) -> (v, n)


@dataclass
class Stream:
    """Events to publish (duplicates included) and the exact rollups of the unique ones."""

    events: list[UsageEvent] = field(default_factory=list)
    expected: Expected = field(default_factory=dict)
    unique: int = 0


def make_stream(tenant_id: int, n_unique: int, dup_rate: float = 0.05, seed: int = 7) -> Stream:
    rng = random.Random(seed)
    now = SystemClock().now_ms()
    stream = Stream(unique=n_unique)
    latest: dict[tuple[str, str, int], tuple[Decimal, int]] = {}
    for i in range(n_unique):
        meter = rng.choice(list(METERS))
        e = UsageEvent(
            tenant_id,
            f"e{seed}-{i:08d}",
            f"cust{rng.randrange(40):02d}",
            meter,
            float(rng.randrange(0, 100)),
            now - rng.randrange(0, 2 * 3_600_000),
            now,
        )
        stream.events.append(e)
        minute = e.timestamp_ms - e.timestamp_ms % MINUTE_MS
        key = (e.customer, e.meter, minute)
        agg = METERS[meter]
        value = Decimal(1) if agg is Aggregation.COUNT else to_decimal(e.value)
        old = latest.get(key)
        latest[key] = merge(agg, old, (value, e.timestamp_ms))
        stream.expected[key] = (latest[key][0], stream.expected.get(key, (0, 0))[1] + 1)
    _add_duplicates(stream, rng, dup_rate)
    return stream


def _add_duplicates(stream: Stream, rng: random.Random, rate: float) -> None:
    events = stream.events
    for _ in range(int(len(events) * rate)):
        i = rng.randrange(len(events))
        copy = events[i]
        if rng.random() < 0.5:  # near: likely in the same batch
            events.insert(min(len(events), i + rng.randrange(1, 20)), copy)
        else:  # far apart: another batch, maybe long after
            events.append(copy)


def publish(bootstrap: str, topic: str, events: list[UsageEvent], chunk: int = 5000) -> None:
    pub = EventPublisher(bootstrap, topic)
    try:
        for i in range(0, len(events), chunk):
            pub.publish(events[i : i + chunk], timeout=60)
    finally:
        pub.close()


class Aggregator:
    """`python -m aggregator` as a subprocess of the test."""

    def __init__(self, env: dict[str, str], log: Path, **settings: str) -> None:
        self.port = free_port()
        full = {**env, "METERLINE_AGGREGATOR_PORT": str(self.port), **settings}
        full.setdefault("METERLINE_AGGREGATOR_BATCH_MS", "100")
        full.setdefault("METERLINE_AGGREGATOR_BATCH_SIZE", "5000")
        self.proc = ManagedProcess(
            "aggregator",
            [sys.executable, "-m", "aggregator"],
            log,
            self._healthy,
            env=full,
            cwd=ROOT,
        )

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> Aggregator:
        self.proc.start(timeout=60)
        return self

    def kill(self) -> None:
        if self.proc.proc is not None and self.proc.alive():
            os.kill(self.proc.proc.pid, signal.SIGKILL)
            self.proc.proc.wait(10)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def stop(self) -> None:
        self.proc.stop(timeout=20)


@contextmanager
def running(*aggs: Aggregator) -> Iterator[tuple[Aggregator, ...]]:
    try:
        for a in aggs:
            a.start()
        yield aggs
    finally:
        for a in aggs:
            a.stop()


def consumed(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets").fetchone()
    return int(row[0]) if row else 0


def wait_for(pred: Any, timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def rollups(pool: ConnectionPool, tenant_id: int) -> Expected:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT customer, meter, (extract(epoch FROM bucket) * 1000)::bigint, value::float8,"
            " count FROM usage_rollups_minute WHERE tenant_id = %s",
            (tenant_id,),
        ).fetchall()
    return {(c, m, b): (v, n) for c, m, b, v, n in rows}


def ledger_count(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT count(*) FROM usage_events").fetchone()
    return int(row[0]) if row else 0


def redis_view(url: str) -> SyncedView:
    return RedisUsageView(redis_connect(url), "ml")


def aggregation_of(_tenant: int, meter: str) -> Aggregation:
    return METERS.get(meter, Aggregation.SUM)
