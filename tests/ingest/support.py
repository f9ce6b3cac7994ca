"""Helpers shared by the ingest and SDK tests: a seeded tenant, an app on real services, and a
reader that returns everything on a topic."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from psycopg_pool import ConnectionPool

from meterline.catalog import PostgresCatalogRepository, parse_catalog
from meterline.events import UsageEvent, decode_event
from meterline.kafka import consumer_config
from meterline.tenants import PostgresTenantRepository
from meterline_devstack.process import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
CATALOG = {
    "meters": [
        {"key": "api_calls", "aggregation": "sum"},
        {"key": "tokens", "aggregation": "sum", "value_property": "total"},
    ],
    "features": [{"key": "api_calls", "kind": "metered", "meter": "api_calls"}],
    "plans": [
        {"key": "free", "default": True, "features": {"api_calls": {"limit": 10, "reset": "day"}}}
    ],
}


@dataclass(frozen=True)
class Seeded:
    """Two tenants with keys: acme (ingest, read-only, both) and globex (ingest)."""

    acme_id: int
    globex_id: int
    acme_ingest: str
    acme_read: str
    globex_ingest: str
    acme_ingest_key_id: str


def seed(conninfo: str) -> Seeded:
    with ConnectionPool(conninfo, min_size=1, max_size=2) as pool:
        tenants = PostgresTenantRepository(pool)
        acme, globex = tenants.create_tenant("acme"), tenants.create_tenant("globex")
        info, acme_ingest = tenants.create_key("acme", ["ingest"])
        _, acme_read = tenants.create_key("acme", ["read"])
        _, globex_ingest = tenants.create_key("globex", ["ingest"])
        catalogs = PostgresCatalogRepository(pool)
        for t in (acme, globex):
            catalogs.apply(t.id, parse_catalog(CATALOG))
    return Seeded(acme.id, globex.id, acme_ingest, acme_read, globex_ingest, info.id)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def read_topic(
    bootstrap: str, topic: str, expect: int, timeout: float = 30.0, partitions: int = 4
) -> list[UsageEvent]:
    """Every event on `topic` from the start: waits for `expect` of them, then drains briefly."""
    with _consumer(bootstrap) as consumer:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        events: list[UsageEvent] = []
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            msgs = consumer.consume(1000, 0.2)
            events += [decode_event(m.value()) for m in msgs if m.error() is None]
            if len(events) >= expect:
                quiet_until = quiet_until or time.monotonic() + 0.5
                if time.monotonic() > quiet_until:
                    break
        return events


@contextmanager
def _consumer(bootstrap: str) -> Iterator[Consumer]:
    consumer = Consumer(consumer_config(bootstrap, f"test-{uuid.uuid4().hex[:8]}"))
    try:
        yield consumer
    finally:
        consumer.close()


def ingest_process(env: dict[str, str], home: Path, **settings: str) -> tuple[ManagedProcess, str]:
    """`python -m ingest` on a free port with `env` (plus METERLINE_INGEST_* `settings`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = {f"METERLINE_INGEST_{k.upper()}": v for k, v in settings.items()}
    proc = ManagedProcess(
        "ingest",
        [sys.executable, "-m", "ingest"],
        home / "ingest.log",
        lambda: _healthy(url),
        env={**env, "METERLINE_INGEST_PORT": str(port), "METERLINE_HOME": str(home), **extra},
        cwd=ROOT,
    )
    return proc, url


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
