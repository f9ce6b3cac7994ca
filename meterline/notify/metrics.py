"""The webhook dispatcher's metrics: a closed list of names, each with its meaning.

They live in the registry of the process that runs the dispatcher (the reporter's).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = self.registry = registry
        # Delivery attempts by outcome: succeeded, failed (non-2xx or network error; retried),
        # exhausted (the last attempt of the schedule failed), refused (URL not allowed).
        self.attempts = Counter(
            "meterline_reporter_webhook_attempts",
            "Webhook delivery attempts",
            ["outcome"],
            registry=r,
        )
        # Latency of each attempt that reached the receiver.
        self.latency = Histogram(
            "meterline_reporter_webhook_attempt_seconds",
            "Webhook attempt latency",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        # Endpoints the dispatcher disabled (a run of failures, or 410 Gone).
        self.disabled = Counter(
            "meterline_reporter_webhook_endpoints_disabled",
            "Webhook endpoints disabled by the dispatcher",
            registry=r,
        )
        # Endpoints now disabled by the dispatcher (not by their owner), read at each scrape:
        # the alert fires while any is left disabled.
        self.disabled_now = Gauge(
            "meterline_reporter_webhook_endpoints_auto_disabled",
            "Webhook endpoints currently disabled after failures",
            registry=r,
        )
        # Age in seconds of the oldest due pending delivery of an enabled endpoint, per scrape.
        self.oldest_due = Gauge(
            "meterline_reporter_webhook_oldest_due_seconds",
            "Age of the oldest due webhook delivery",
            registry=r,
        )
