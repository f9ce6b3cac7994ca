"""Everything the app needs, built once from the settings (`build`) or by hand in tests.

`Dependencies` is what the routes see; nothing here is created at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import stripe

from entitlements_api.metrics import Metrics
from entitlements_api.reads import ReadLane
from entitlements_api.settings import EntitlementsSettings
from meterline.auth import Authenticator
from meterline.catalog import CatalogRepository, PostgresCatalogRepository
from meterline.clock import Clock, SystemClock
from meterline.dedupe import RedisDeduper
from meterline.entitlements import (
    CustomerRepository,
    EntitlementService,
    FallbackUsage,
    GrantRepository,
    PostgresAnswerStore,
    PostgresCustomerRepository,
    PostgresGrantRepository,
    PostgresSubscriptionRepository,
    RollupUsage,
    ServiceOptions,
    SubscriptionRepository,
    ViewUsage,
)
from meterline.entitlements.ids import LoopThread
from meterline.entitlements.postgres import LedgerIngestedIds
from meterline.entitlements.usage import SeriesQuery
from meterline.kafka.producer import EventPublisher
from meterline.postgres import open_pool
from meterline.redis import connect as redis_connect
from meterline.redis import connect_async as redis_connect_async
from meterline.settings import Settings
from meterline.stripe import (
    CatalogSync,
    PostgresStripeObjectRepository,
    PostgresWebhookEventStore,
    StripeObjectRepository,
    SubscriptionSync,
    stripe_client,
)
from meterline.tenants import PostgresTenantRepository, TenantRepository
from meterline.usage import UsageQuery
from meterline.view import RedisUsageView


@dataclass
class Dependencies:
    service: EntitlementService
    catalogs: CatalogRepository
    customers: CustomerRepository
    subscriptions: SubscriptionRepository
    grants: GrantRepository
    tenants: TenantRepository
    auth: Authenticator
    stripe: stripe.StripeClient | None
    stripe_objects: StripeObjectRepository
    subscription_sync: SubscriptionSync
    usage_query: SeriesQuery | None
    webhook_secret: str | None
    reads: ReadLane = field(default_factory=ReadLane)
    webhook_tolerance_s: int = 300
    clock: Clock = field(default_factory=SystemClock)
    metrics: Metrics = field(default_factory=Metrics)
    ready_checks: dict[str, Callable[[], object]] = field(default_factory=dict)
    closers: list[Callable[[], object]] = field(default_factory=list)

    def catalog_sync(self) -> CatalogSync | None:
        return None if self.stripe is None else CatalogSync(self.stripe, self.stripe_objects)

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


def build(
    settings: Settings, own: EntitlementsSettings, clock: Clock | None = None
) -> Dependencies:
    """Connect to Postgres, Redis, Kafka and Stripe; raises ConfigError when one is unreachable.

    `clock` (tests) drives decisions, reservations and grace periods alike.
    """
    clock = clock or SystemClock()
    pool = open_pool(settings.database.url, max_size=own.pool_size, name="entitlements")
    client = redis_connect(settings.redis.url)
    query = UsageQuery(pool)
    view = RedisUsageView(client, settings.redis.key_prefix, clock=clock, archive=query)
    publisher = EventPublisher(settings.kafka.bootstrap, settings.kafka.topic)
    reads = ReadLane()
    read_pool = open_pool(settings.database.url, max_size=reads.workers, name="entitlements-reads")
    usage = FallbackUsage(view, ViewUsage(view), RollupUsage(query), own.view_ready_ttl)
    subs = PostgresSubscriptionRepository(pool)
    customers = PostgresCustomerRepository(pool)
    grants = PostgresGrantRepository(pool)
    catalogs = PostgresCatalogRepository(pool)
    options = ServiceOptions(own.plan_cache_ttl, own.decision_cache_ttl, own.publish_timeout)
    loop = LoopThread()
    deduper = RedisDeduper(
        redis_connect_async(settings.redis.url), settings.redis.key_prefix, own.dedupe_window_s
    )
    ingested = LedgerIngestedIds(pool, deduper, loop, own.dedupe_timeout_s)
    answers = PostgresAnswerStore(pool)
    service = EntitlementService(
        catalogs, subs, grants, usage, view, publisher, answers, clock, options, ingested
    )
    sc = stripe_client(settings.stripe)
    objects = PostgresStripeObjectRepository(pool)
    events = PostgresWebhookEventStore(pool)
    sync = SubscriptionSync(sc, customers, subs, objects, events, service.invalidate, clock)
    tenants = PostgresTenantRepository(pool)
    return Dependencies(
        service=service,
        catalogs=catalogs,
        customers=customers,
        subscriptions=subs,
        grants=grants,
        tenants=tenants,
        auth=Authenticator(tenants, ttl=own.auth_cache_ttl),
        stripe=sc,
        stripe_objects=objects,
        subscription_sync=sync,
        usage_query=UsageQuery(read_pool),
        webhook_secret=settings.stripe.webhook_secret,
        reads=reads,
        webhook_tolerance_s=own.webhook_tolerance_s,
        clock=clock,
        ready_checks=_ready_checks(pool, client),
        closers=[
            pool.close,
            read_pool.close,
            reads.close,
            client.close,
            lambda: publisher.close(own.drain_seconds),
            loop.close,
            lambda: loop.run(deduper.close(), 5.0),
        ],
    )


def _ready_checks(pool: Any, client: Any) -> dict[str, Callable[[], object]]:
    def postgres() -> object:
        with pool.connection() as conn:
            return conn.execute("SELECT 1").fetchone()

    return {"postgres": postgres, "redis": client.ping}
