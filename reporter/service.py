"""Assembling the reporter from settings: one place where clients and collaborators are built.

`build(settings, reporter_settings)` opens the Postgres pool and the Stripe client and wires
the sender chain: Stripe sender (v1 or v2 stream, rate-limited) -> [crash hook, tests only]
-> retries with backoff. Nothing is created at import time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from meterline.auth import Authenticator
from meterline.clock import Clock, SystemClock
from meterline.dunning import Dunning, DunningSettings
from meterline.dunning.build import build_dunning
from meterline.notify.metrics import WebhookMetrics
from meterline.notify.postgres.deliveries import DeliveryLog
from meterline.notify.postgres.endpoints import EndpointStore
from meterline.notify.settings import WebhookSettings
from meterline.postgres import Pool, open_pool
from meterline.postgres.schema import require_current_schema_in
from meterline.settings import DatabaseSettings, StripeSettings
from meterline.stripe.client import stripe_client
from meterline.stripe.invoice_facts import StripeInvoices
from meterline.stripe.meter_events import MeterEventSender, StripeMeterEventSender
from meterline.stripe.ratelimit import TokenBucket
from meterline.stripe.sending import RetryingSender
from meterline.stripe.summaries import StripeSummaryReader, SummaryReader
from meterline.tenants import PostgresTenantRepository
from reporter.alerts import Discrepancy, ReconciliationStore
from reporter.boundaries import BoundaryKeeper
from reporter.faults import CrashingSender
from reporter.lag import LagGauge
from reporter.metrics import ReporterMetrics
from reporter.notify import Notifier, NullNotifier, WebhookNotifier
from reporter.postgres.alerts import PostgresReconciliationStore
from reporter.postgres.contexts import PostgresContextStore
from reporter.postgres.lag import PostgresLagProbes
from reporter.postgres.ledger import PostgresReportLedger
from reporter.postgres.push import PostgresPushRecords
from reporter.postgres.reconcile import PostgresReconcileRecords
from reporter.postgres.repairs import PostgresRepairRecords
from reporter.postgres.rollups import PostgresUsageFigures
from reporter.push import Pusher, PushReport
from reporter.reconcile import Reconciler, RunResult
from reporter.repairs import Repairs
from reporter.settings import ReporterSettings


@dataclass
class Reporter:
    """Everything the API, the scheduler and the CLI use."""

    pool: Pool
    settings: ReporterSettings
    clock: Clock
    sender: MeterEventSender
    summaries: SummaryReader
    metrics: ReporterMetrics
    notifier: Notifier
    webhooks: WebhookSettings = field(default_factory=WebhookSettings.model_construct)
    dunning: Dunning | None = None
    """Runs the dunning sequences' timed steps on each tick (None: not here)."""
    store: ReconciliationStore = field(init=False)
    pusher: Pusher = field(init=False)
    reconciler: Reconciler = field(init=False)
    lag: LagGauge = field(init=False)
    repairs: Repairs = field(init=False)
    auth: Authenticator = field(init=False)
    endpoints: EndpointStore = field(init=False)
    delivery_log: DeliveryLog = field(init=False)
    webhook_metrics: WebhookMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.endpoints = EndpointStore(self.pool, self.webhooks.allow_private_urls)
        self.delivery_log = DeliveryLog(self.pool)
        self.webhook_metrics = WebhookMetrics(self.metrics.registry)
        self.store = PostgresReconciliationStore(self.pool)
        self.lag = LagGauge(
            PostgresLagProbes(self.pool), self.summaries, self.clock, self.settings.stripe_lag_s
        )
        ledger = PostgresReportLedger(self.pool)
        contexts = PostgresContextStore(self.pool)
        keeper = BoundaryKeeper(
            contexts, ledger, PostgresUsageFigures(self.pool), self.sender, self.clock, self.store
        )
        self.pusher = Pusher(
            PostgresPushRecords(self.pool), ledger, contexts, keeper, self.sender, self.settings,
            self.clock, self.store, self.metrics, self.lag,
        )  # fmt: skip
        self.reconciler = Reconciler(
            PostgresReconcileRecords(self.pool), ledger, contexts, self.summaries, self.settings,
            self.clock, self.store, self.metrics, self.notifier, self.lag,
        )  # fmt: skip
        self.repairs = Repairs(
            PostgresRepairRecords(self.pool), self.sender, self.summaries, self.push_tenant,
            self.clock,
        )  # fmt: skip
        self.auth = Authenticator(PostgresTenantRepository(self.pool))

    def push(self) -> PushReport:
        return self.pusher.run()

    def push_tenant(self, tenant_id: int) -> PushReport:
        return self.pusher.run([tenant_id])

    def reconcile(self, day: date, trigger: str = "scheduled") -> list[RunResult]:
        return self.reconciler.run(day, trigger)

    def reconcile_nightly(self, day: date) -> list[RunResult]:
        """`day` and every day touched by late events or corrections since the last night."""
        return self.reconciler.run_due(day)

    def tick(self) -> None:
        """The scheduler's every-tick work: contexts of subscriptions that changed, the lag
        gauge's probe, and the dunning steps that came due."""
        self.pusher.sync_changed()
        self.lag.resolve()
        if self.dunning is not None:
            self.dunning.run_due()

    def flush_blocked(self, tenant_id: int, customer: str, at: datetime) -> None:
        """The period-end flush of boundary `at` ran before the aggregator was past it."""
        detail = (
            "the period-end flush ran before the aggregator was past this boundary: usage it "
            "had not committed yet goes out with later pushes, possibly after the invoice"
        )
        found = Discrepancy("flush_blocked", customer, "*", at, at, Decimal(0), Decimal(0),
                            None, Decimal(0), detail=detail)  # fmt: skip
        self.store.record(tenant_id, None, [found])

    def close(self) -> None:
        self.pool.close()


def sender_chain(
    stripe: StripeSettings, settings: ReporterSettings, metrics: ReporterMetrics
) -> MeterEventSender:
    client = stripe_client(stripe.model_copy(update={"max_network_retries": 0}))
    sender: MeterEventSender = StripeMeterEventSender(
        client,
        stream_threshold=settings.stream_threshold,
        v1_limiter=TokenBucket(settings.meter_event_rate),
        stream_limiter=TokenBucket(settings.stream_rate),
        on_request=metrics.observe_stripe,
    )
    if settings.crash_after_send > 0:
        sender = CrashingSender(
            sender, settings.crash_after_send, random.Random(settings.crash_seed)
        )
    return RetryingSender(
        sender,
        max_attempts=settings.retry_max_attempts,
        base_delay=settings.retry_base_s,
        max_delay=settings.retry_max_s,
        on_retry=metrics.observe_retry,
    )


def build(
    database: DatabaseSettings,
    stripe: StripeSettings,
    settings: ReporterSettings,
    clock: Clock | None = None,
    pool_size: int | None = None,
    webhooks: WebhookSettings | None = None,
    dunning: DunningSettings | None = None,
) -> Reporter:
    metrics = ReporterMetrics()
    client = stripe_client(stripe.model_copy(update={"max_network_retries": 0}))
    summaries = StripeSummaryReader(
        client, TokenBucket(settings.summary_rate), on_request=metrics.observe_stripe
    )
    notifier: Notifier = (
        WebhookNotifier(settings.notify_webhook_url, settings.public_url)
        if settings.notify_webhook_url
        else NullNotifier()
    )
    pool = open_pool(database.url, max_size=pool_size or database.pool_size, name="reporter")
    require_current_schema_in(pool, "reporter")
    clock = clock or SystemClock()
    policy = (dunning or DunningSettings.model_construct()).policy()
    return Reporter(
        pool=pool,
        settings=settings,
        clock=clock,
        sender=sender_chain(stripe, settings, metrics),
        summaries=summaries,
        metrics=metrics,
        notifier=notifier,
        webhooks=webhooks or WebhookSettings.model_construct(),
        dunning=build_dunning(pool, StripeInvoices(client), policy, clock),
    )
