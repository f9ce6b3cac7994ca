"""Everything the app needs, built once from the settings (`build`) or by hand in tests.

`Dependencies` is what the routes see; nothing here is created at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from entitlements_api.batching import ConsumeBatcher
from entitlements_api.metrics import Metrics
from entitlements_api.reads import ReadLane
from entitlements_api.settings import EntitlementsSettings
from meterline.auth import Authenticator
from meterline.billing import (
    BillingAccount,
    BillingCheckout,
    BillingOverview,
    CheckoutPorts,
    PlanChanges,
    PostgresFulfilmentRepository,
    Seats,
)
from meterline.billing.over_limit import OverLimitPolicy
from meterline.billing.webhooks import BillingWebhooks, EventHandler, PlanWatch
from meterline.catalog import CatalogRepository, PostgresCatalogRepository
from meterline.clock import Clock, SystemClock
from meterline.dedupe import BlockingRedisDeduper
from meterline.dunning import Dunning, DunningSettings, DunningWebhooks
from meterline.dunning.build import build_dunning
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
from meterline.entitlements.invalidation import RedisChangeFeed
from meterline.entitlements.postgres import LedgerIngestedIds
from meterline.entitlements.thresholds import Notifier
from meterline.entitlements.usage_notices import SweepThread, UsageNoticeSweep, lock_key
from meterline.kafka.producer import EventPublisher
from meterline.notify.postgres.notices import PostgresNoticeLedger
from meterline.postgres import Pool, open_pool, ping
from meterline.postgres.leadership import Leadership, connector
from meterline.postgres.schema import require_current_schema_in
from meterline.redis import connect as redis_connect
from meterline.revenue import RevenueListener
from meterline.revenue.postgres import PostgresRevenueEventStore
from meterline.settings import Settings
from meterline.stripe import (
    CatalogSync,
    PostgresStripeObjectRepository,
    PostgresWebhookEventStore,
    StripeClient,
    StripeObjectRepository,
    SubscriptionSync,
    ensure_stripe_customer,
    stripe_client,
)
from meterline.stripe.checkout import StripeCheckout
from meterline.stripe.invoice_facts import StripeInvoices
from meterline.stripe.plan_changes import StripePlanChanges
from meterline.stripe.revenue_history import StripeInvoiceLines
from meterline.stripe.self_service import StripeSelfService
from meterline.tenants import PostgresTenantRepository, TenantRepository
from meterline.usage import UsageQuery, UsageStore
from meterline.view import RedisUsageView
from meterline.view.touched import RedisTouched


@dataclass
class Dependencies:
    service: EntitlementService
    catalogs: CatalogRepository
    customers: CustomerRepository
    subscriptions: SubscriptionRepository
    grants: GrantRepository
    tenants: TenantRepository
    auth: Authenticator
    stripe: StripeClient | None
    stripe_objects: StripeObjectRepository
    subscription_sync: SubscriptionSync
    usage_query: UsageStore | None
    webhook_secret: str | None
    billing: BillingCheckout | None = None
    plan_changes: PlanChanges | None = None
    billing_account: BillingAccount | None = None
    billing_overview: BillingOverview | None = None
    seats: Seats | None = None
    stripe_events: EventHandler | None = None
    reads: ReadLane = field(default_factory=ReadLane)
    webhook_tolerance_s: int = 300
    clock: Clock = field(default_factory=SystemClock)
    metrics: Metrics = field(default_factory=Metrics)
    ready_checks: dict[str, Callable[[], object]] = field(default_factory=dict)
    closers: list[Callable[[], object]] = field(default_factory=list)
    consume_lane: Executor | None = None
    """Where consumes run (None: the event loop's default executor)."""
    consume_batches: int = 2
    """How many batches of consumes are decided at once (`batching.ConsumeBatcher`)."""
    revenue: RevenueListener | None = None
    dunning: Dunning | None = None
    _batchers: WeakKeyDictionary[asyncio.AbstractEventLoop, ConsumeBatcher] = field(
        default_factory=WeakKeyDictionary, init=False, repr=False
    )

    def consumes(self) -> ConsumeBatcher:
        """The running loop's consume batcher (the FastAPI route and the fast path use it)."""
        loop = asyncio.get_running_loop()
        found = self._batchers.get(loop)
        if found is None:
            found = ConsumeBatcher(self.service, self.consume_lane, self.consume_batches)
            self._batchers[loop] = found
        return found

    def catalog_sync(self) -> CatalogSync | None:
        return None if self.stripe is None else CatalogSync(self.stripe, self.stripe_objects)

    def webhook_handler(self) -> EventHandler:
        """What handles a verified Stripe event: billing around the subscription sync."""
        return self.stripe_events or self.subscription_sync

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


CONSUME_PRODUCER = {"linger.ms": 0}
"""The consume publisher's producer settings over `producer_config`'s: a batch of consumes is
produced in one call and waits for its acknowledgement, so lingering cannot gather more events
into the request, only delay every answer (bench/HISTORY.md has the pairs that measured it)."""


def build(
    settings: Settings,
    own: EntitlementsSettings,
    clock: Clock | None = None,
    dunning: DunningSettings | None = None,
) -> Dependencies:
    """Connect to Postgres, Redis, Kafka and Stripe; raises ConfigError when one is unreachable
    or the schema is older than the code.

    `clock` (tests) drives decisions, reservations, grace periods and dunning alike.
    """
    clock = clock or SystemClock()
    pool = open_pool(settings.database.url, max_size=own.pool_size, name="entitlements")
    require_current_schema_in(pool, "entitlements_api")
    lane = ThreadPoolExecutor(own.consume_threads, thread_name_prefix="consume")
    client = redis_connect(settings.redis.url)
    query = UsageQuery(pool)
    view = RedisUsageView(client, settings.redis.key_prefix, clock=clock, archive=query)
    publisher = EventPublisher(settings.kafka.bootstrap, settings.kafka.topic, **CONSUME_PRODUCER)
    reads = ReadLane()
    read_pool = open_pool(settings.database.url, max_size=reads.workers, name="entitlements-reads")
    usage = FallbackUsage(view, ViewUsage(view), RollupUsage(query), own.view_ready_ttl)
    subs = PostgresSubscriptionRepository(pool)
    customers = PostgresCustomerRepository(pool)
    grants = PostgresGrantRepository(pool)
    catalogs = PostgresCatalogRepository(pool)
    options = ServiceOptions(own.plan_cache_ttl, own.decision_cache_ttl, own.publish_timeout)
    dedupe_client = redis_connect(settings.redis.url, timeout=own.dedupe_timeout_s)
    deduper = BlockingRedisDeduper(dedupe_client, settings.redis.key_prefix, own.dedupe_window_s)
    ingested = LedgerIngestedIds(pool, deduper)
    answers = PostgresAnswerStore(pool)
    channel = f"{settings.redis.key_prefix}:entitlements:changes"
    feed = RedisChangeFeed(client, settings.redis.url, channel, own.fallback_cache_ttl)
    notifier = Notifier(PostgresNoticeLedger(pool))
    parts = (catalogs, subs, grants, usage, view, publisher, answers, clock, options, ingested)
    service = EntitlementService(*parts, feed, notifier)
    feed.listen(service)
    metrics = Metrics()
    sweeper = _usage_notices(settings, own, service, client, metrics)
    sc = stripe_client(settings.stripe)
    objects = PostgresStripeObjectRepository(pool)
    events = PostgresWebhookEventStore(pool)
    sync = SubscriptionSync(sc, customers, subs, objects, events, service.invalidate, clock)
    tenants = PostgresTenantRepository(pool)
    ports = CheckoutPorts(
        catalog_of=service.catalog,
        customers=customers,
        subscriptions=subs,
        objects=objects,
        stripe_customer=lambda t, c: ensure_stripe_customer(sc, customers, t, c),
        sync_subscription=sync.sync,
        fulfilments=PostgresFulfilmentRepository(pool),
    )
    billing = BillingCheckout(ports, StripeCheckout(sc))
    over_limit = OverLimitPolicy(service.catalog, service.check_all, grants, service.invalidate)
    watch = PlanWatch(customers, subs, over_limit)
    self_service, plan_stripe = StripeSelfService(sc), StripePlanChanges(sc)
    account = BillingAccount(subs, ports.stripe_customer, self_service, sync.sync)
    plans = PlanChanges(service.catalog, subs, objects, plan_stripe, sync.sync, clock)
    policy = (dunning or DunningSettings.model_construct()).policy()
    dunning_service = build_dunning(
        pool, StripeInvoices(sc), policy, clock, service.catalog, customers, subs
    )
    overview = BillingOverview(
        service.check_all, customers, subs, objects, plans, plan_stripe, self_service,
        dunning_service.shown,
    )  # fmt: skip
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
        revenue=RevenueListener(customers, PostgresRevenueEventStore(pool), StripeInvoiceLines(sc)),
        usage_query=UsageQuery(read_pool),
        webhook_secret=settings.stripe.webhook_secret,
        billing=billing,
        plan_changes=plans,
        billing_account=account,
        billing_overview=overview,
        seats=Seats(service.catalog, subs, plan_stripe, sync.sync, clock),
        stripe_events=DunningWebhooks(BillingWebhooks(billing, sync, watch), dunning_service),
        dunning=dunning_service,
        reads=reads,
        webhook_tolerance_s=own.webhook_tolerance_s,
        clock=clock,
        metrics=metrics,
        ready_checks=_ready_checks(pool, client),
        consume_lane=lane,
        consume_batches=own.consume_batches,
        closers=[
            lambda: lane.shutdown(wait=False),
            feed.close,
            pool.close,
            answers.close,  # closers run last first: before the pool closes
            read_pool.close,
            reads.close,
            client.close,
            lambda: publisher.close(own.drain_seconds),
            dedupe_client.close,
            *([sweeper.close] if sweeper else []),  # first: it uses the pool and the client
        ],
    )


def _usage_notices(
    settings: Settings,
    own: EntitlementsSettings,
    service: EntitlementService,
    client: Any,
    metrics: Metrics,
) -> SweepThread | None:
    """The detector of thresholds reached by counted usage, on a thread, one replica at a
    time (meterline/entitlements/usage_notices.py); None when turned off."""
    if not own.usage_notices:
        return None
    prefix = settings.redis.key_prefix
    leading = Leadership(connector(settings.database.url), key=lock_key(prefix), name="notices")
    sweep = UsageNoticeSweep(
        RedisTouched(client, prefix),
        service.announce_usage,
        leading=leading,
        interval_s=own.usage_notice_interval_s,
        max_share=own.usage_notice_max_share,
        observe=metrics.usage_notice_pass,
    )
    return SweepThread(sweep, leading.release)


def _ready_checks(pool: Pool, client: Any) -> dict[str, Callable[[], object]]:
    return {"postgres": lambda: ping(pool, timeout=None), "redis": client.ping}
