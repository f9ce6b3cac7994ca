"""Assembling the running service from settings: clients, caches and the sink chain."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ingest.app import Dependencies
from ingest.caches import KeyCache, MeterCache
from ingest.concurrency import ConcurrencyLimit
from ingest.fairness import FairAdmission
from ingest.metrics import IngestMetrics
from ingest.ratelimit import RateLimitedSink, TokenBuckets
from ingest.settings import IngestSettings
from ingest.sinks import AdmissionSink, DedupingSink, PublishingSink, Sink, TimedSink
from meterline.catalog import PostgresCatalogRepository
from meterline.dedupe import (
    BoundedDeduper,
    CoalescingDeduper,
    Deduper,
    DurableIdsDeduper,
    RedisDeduper,
)
from meterline.entitlements.postgres import GrantedIds
from meterline.kafka.producer import EventPublisher
from meterline.postgres import open_pool, ping
from meterline.postgres.schema import require_current_schema_in
from meterline.redis import connect, connect_async
from meterline.redis.buckets import RedisBucketStore
from meterline.settings import DatabaseSettings, KafkaSettings, RedisSettings, load_section
from meterline.tenants import PostgresTenantRepository

log = logging.getLogger("ingest.service")

RATE_LEASE_S = 0.05
"""Each process takes a tenant's tokens from Redis 50 ms of its rate at a time."""
PRODUCER_WAIT_S = 5.0
"""How long start-up waits for the producer's id, so that the first requests need not wait."""


@dataclass(frozen=True)
class Sections:
    """The settings sections ingest reads, loaded once in `__main__`."""

    ingest: IngestSettings
    kafka: KafkaSettings
    database: DatabaseSettings
    redis: RedisSettings

    @classmethod
    def load(cls) -> Sections:
        """Every section from the environment (ConfigError listing what is wrong)."""
        return cls(
            load_section(IngestSettings),
            load_section(KafkaSettings),
            load_section(DatabaseSettings),
            load_section(RedisSettings),
        )


def sink_chain(
    publisher: EventPublisher,
    deduper: Deduper,
    buckets: TokenBuckets,
    s: IngestSettings,
    metrics: IngestMetrics,
) -> Sink:
    """RateLimited → Admission → Deduping → Timed → Publishing; `deduper` bounds its own calls."""
    sink: Sink = PublishingSink(publisher, s.produce_timeout_s)
    sink = TimedSink(sink, metrics.produce_seconds.observe)
    sink = DedupingSink(sink, deduper, on_error=lambda _e: metrics.dedupe_errors.inc())
    admission = AdmissionSink(sink, s.max_inflight_events)
    metrics.watch_in_flight(lambda: admission.in_flight)
    return RateLimitedSink(admission, buckets)


def build(sections: Sections) -> Dependencies:
    """Connect to Postgres and Redis (ConfigError if one is unreachable, or the schema is older
    than the code) and to the broker:
    wait up to `PRODUCER_WAIT_S` for the producer's id; without it ingest starts anyway, not
    ready (`/readyz`), and its requests wait for the broker as long as `PRODUCE_TIMEOUT_S`."""
    s = sections.ingest
    pool = open_pool(sections.database.url, max_size=4, name="ingest")
    require_current_schema_in(pool, "ingest")
    connect(sections.redis.url).close()
    client = connect_async(sections.redis.url)
    redis_deduper = RedisDeduper(client, sections.redis.key_prefix, s.dedupe_window_s)
    bounded = CoalescingDeduper(BoundedDeduper(redis_deduper, s.dedupe_timeout_s))
    deduper = DurableIdsDeduper(bounded, redis_deduper, GrantedIds(pool))
    store = RedisBucketStore(client, sections.redis.key_prefix)
    buckets = TokenBuckets(s.tenant_rate, s.tenant_rates, store, lease_s=RATE_LEASE_S)
    tuning = {"linger.ms": s.linger_ms, "queue.buffering.max.messages": s.producer_queue_max}
    publisher = EventPublisher(sections.kafka.bootstrap, sections.kafka.topic, **tuning)
    if not publisher.wait_ready(PRODUCER_WAIT_S):
        log.warning("the broker has not given the producer an id yet; starting, not ready")
    metrics = IngestMetrics()
    metrics.watch_queue(publisher.queue_depth)
    concurrency = ConcurrencyLimit(s.max_active_requests, s.target_latency_s)
    metrics.watch_concurrency(lambda: concurrency.limit)
    fairness = FairAdmission(s.target_loop_lag_s)
    metrics.watch_loop_lag(lambda: fairness.lag.lag)

    async def shutdown() -> None:
        left = await asyncio.to_thread(publisher.close, s.graceful_timeout_s)
        log.info("producer flushed", extra={"undelivered": left})
        await deduper.close()
        pool.close()

    return Dependencies(
        keys=KeyCache(PostgresTenantRepository(pool), "ingest", s.auth_cache_s),
        meters=MeterCache(PostgresCatalogRepository(pool), s.catalog_cache_s),
        sink=sink_chain(publisher, deduper, buckets, s, metrics),
        metrics=metrics,
        checks={
            "broker": lambda: asyncio.to_thread(publisher.ping, 2.0),
            "redis": deduper.ping,
            "postgres": lambda: asyncio.to_thread(ping, pool),
        },
        max_body_bytes=s.max_body_bytes,
        max_batch_events=s.max_batch_events,
        concurrency=concurrency,
        fairness=fairness,
        lateness_ms=s.lateness_days * 86_400_000,
        shutdown=shutdown,
    )
