"""The parts of the scale-out scenario (`scaleout.py`): its sizes, where its replicas run (a
database, topic, consumer group and Redis prefix of their own), its figures and verdict, and the
small client helpers its steps share."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from bench.reliability.replicas import Replica
from meterline.kafka import ensure_topics
from meterline.postgres import apply_migrations

PARTITIONS = 4


@dataclass(frozen=True)
class Size:
    events: int
    batch: int
    senders: int
    customers: int


FULL = Size(events=200_000, batch=500, senders=4, customers=40)
REDUCED = Size(events=3_000, batch=250, senders=2, customers=6)


@dataclass(frozen=True)
class Backing:
    """Where the replicas run: a migrated database of their own, a 4-partition topic, Redis
    (with a key prefix of their own) and the Stripe emulator."""

    database_url: str
    kafka: str
    topic: str
    dlq_topic: str
    redis_url: str
    redis_prefix: str
    stripe_url: str
    stripe_key: str
    group: str = "meterline-aggregator"

    def env(self) -> dict[str, str]:
        return {
            "METERLINE_AGGREGATOR_GROUP_ID": self.group,
            "METERLINE_DATABASE_URL": self.database_url,
            "METERLINE_KAFKA_BOOTSTRAP": self.kafka,
            "METERLINE_KAFKA_TOPIC": self.topic,
            "METERLINE_KAFKA_DLQ_TOPIC": self.dlq_topic,
            "METERLINE_REDIS_URL": self.redis_url,
            "METERLINE_REDIS_KEY_PREFIX": self.redis_prefix,
            "METERLINE_STRIPE_API_BASE": self.stripe_url,
            "METERLINE_STRIPE_API_KEY": self.stripe_key,
            "METERLINE_STRIPE_WEBHOOK_SECRET": "whsec_scaleout_test_only",
        }


@dataclass
class Figures:
    sent: int = 0
    counted: int = 0
    lost: int = 0
    doubled: int = 0
    wrong_totals: int = 0
    load_s: float = 0.0
    settle_s: float = 0.0
    group_behind: int | None = None
    refused_on_b_ms: float | None = None
    consume_on_b: int | None = None
    grant_on_b_ms: float | None = None
    pushing_replicas: int = 0
    handover_s: float | None = None
    pushed_twice: int = 0
    stripe_equal: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.sent > 0
            and self.lost == 0
            and self.doubled == 0
            and self.wrong_totals == 0
            and self.group_behind == 0
            and self.refused_on_b_ms is not None
            and self.refused_on_b_ms < 100
            and self.consume_on_b == 403
            and self.grant_on_b_ms is not None
            and self.grant_on_b_ms < 100
            and self.pushing_replicas == 1
            and self.handover_s is not None
            and self.handover_s < 30
            and self.pushed_twice == 0
            and self.stripe_equal
        )

    def lines(self) -> list[str]:
        return [
            f"{self.sent:,} events sent in {self.load_s:.1f} s "
            f"({self.sent / max(self.load_s, 1e-9):,.0f}/s), all counted {self.settle_s:.1f} s "
            f"after: {self.lost} lost, {self.doubled} doubled, {self.wrong_totals} wrong totals",
            f"Kafka group offsets behind the positions in Postgres: {self.group_behind}",
            f"consume on A refused on B after {self.refused_on_b_ms} ms; consume on B: "
            f"{self.consume_on_b}; grant on A seen on B after {self.grant_on_b_ms} ms",
            f"reporters that pushed: {self.pushing_replicas}; handover after SIGKILL: "
            f"{self.handover_s if self.handover_s is None else round(self.handover_s, 1)} s; "
            f"identifiers pushed twice: {self.pushed_twice}; "
            f"Stripe = Postgres: {self.stripe_equal}",
            *self.notes,
        ]


def start_all(replicas: list[Replica]) -> None:
    """Start every replica at once (each waits for its own health)."""
    with ThreadPoolExecutor(len(replicas)) as pool:
        list(pool.map(Replica.start, replicas))


def http_client(replica: Replica, key: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.Client(base_url=replica.url, headers=headers, timeout=10)


def post_until_accepted(replica: Replica, key: str, events: list[dict[str, Any]]) -> None:
    """Send `events` until ingest answers 202, resending the same ids after any failure."""
    with http_client(replica, key) as http:
        for attempt in range(600):
            try:
                answer = http.post("/v1/events", json=events)
                if answer.status_code == 202:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(min(1.0, 0.05 * (attempt + 1)))
    raise RuntimeError(f"ingest {replica.name} never accepted a batch")


def wait_for(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    """Poll `read()` until `done` holds for it; its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005 if timeout <= 5 else 0.25)


@contextmanager
def fresh_backing(
    postgres_url: str, kafka: str, redis_url: str, stripe_url: str, stripe_key: str
) -> Iterator[Backing]:
    """A migrated database, a 4-partition topic and a Redis key prefix of their own, on the
    given servers; the database is dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    name = f"scaleout_{suffix}"
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        with psycopg.connect(url) as conn:
            apply_migrations(conn)
            # tenant ids of their own: Stripe meters are named after them, on a shared emulator
            start = 1_000_000 + int(suffix[:5], 16)
            conn.execute("SELECT setval(pg_get_serial_sequence('tenants', 'id'), %s)", (start,))
        topic, dlq = f"scaleout.{suffix}.usage", f"scaleout.{suffix}.dlq"
        ensure_topics(kafka, [topic, dlq], partitions=PARTITIONS)
        prefix, group = f"so{suffix}", f"scaleout-{suffix}"  # shared with no other consumer
        yield Backing(url, kafka, topic, dlq, redis_url, prefix, stripe_url, stripe_key, group)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
