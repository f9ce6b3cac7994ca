"""The reporter's metrics: a closed list of names, each with its meaning.

One `ReporterMetrics` owns its own `CollectorRegistry`, so tests read values from it
(`registry.get_sample_value`) and a process serves these names on `/metrics`, with the
process's and the interpreter's own (`meterline.metrics.service_registry`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from meterline.metrics import service_registry


class ReporterMetrics:
    def __init__(self) -> None:
        r = self.registry = service_registry()
        # Meter events settled with Stripe, by outcome: delivered, duplicate (already held by
        # Stripe: a resend after a crash), rejected (refused for good), too_late (never sent).
        self.events = Counter(
            "meterline_reporter_events", "Meter events settled", ["outcome"], registry=r
        )
        # Push runs by status: ok, partial (Stripe unavailable; rows left pending), skipped
        # (another push holds the lock), failed.
        self.push_runs = Counter(
            "meterline_reporter_push_runs", "Push runs", ["status"], registry=r
        )
        # Reconciliation runs by status: ok, alerts, failed.
        self.reconcile_runs = Counter(
            "meterline_reporter_reconcile_runs", "Reconciliation runs", ["status"], registry=r
        )
        # Backoff sleeps after a 429, 5xx or network error from Stripe.
        self.retries = Counter("meterline_reporter_stripe_retries", "Stripe retries", registry=r)
        # Latency of each Stripe call by kind (meter_event, meter_event_stream, event_summaries,
        # meter_event_session, cancel).
        self.stripe_latency = Histogram(
            "meterline_reporter_stripe_request_seconds",
            "Stripe call latency",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        # Unix time of the last successful run, by job (push, reconcile).
        self.last_success = Gauge(
            "meterline_reporter_last_success_timestamp_seconds",
            "Last successful run",
            ["job"],
            registry=r,
        )
        # 1 while this replica runs the schedule (holds the leadership), else 0; summed over
        # the replicas it is 1, or 0 for at most a tick during a handover.
        self.scheduler_active = Gauge(
            "meterline_reporter_scheduler_active", "This replica runs the schedule", registry=r
        )
        # Reconciliation alerts currently open (all tenants).
        self.open_alerts = Gauge("meterline_reporter_open_alerts", "Open alerts", registry=r)

    def observe_stripe(self, kind: str, seconds: float) -> None:
        self.stripe_latency.labels(kind).observe(seconds)

    def observe_retry(self, seconds: float) -> None:
        self.retries.inc()
