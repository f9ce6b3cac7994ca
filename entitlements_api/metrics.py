"""The closed list of this service's Prometheus metrics, one registry per app."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from meterline.metrics import service_registry


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=service_registry)

    def __post_init__(self) -> None:
        r = self.registry
        # Every HTTP request by route template and status.
        self.requests = Counter(
            "meterline_entitlements_requests_total",
            "HTTP requests",
            ["route", "status"],
            registry=r,
        )
        # Time to answer a request, by route template.
        self.latency = Histogram(
            "meterline_entitlements_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
            registry=r,
        )
        # Entitlement decisions by reason (checks and consumes).
        self.decisions = Counter(
            "meterline_entitlements_decisions_total", "Decisions", ["reason"], registry=r
        )
        # Consume outcomes: granted, refused, replayed (a repeated event_id), failed.
        self.consumes = Counter(
            "meterline_entitlements_consumes_total", "Consumes", ["outcome"], registry=r
        )
        # Stripe webhook events by outcome: applied, ignored, duplicate, rejected, failed.
        self.webhooks = Counter(
            "meterline_entitlements_webhooks_total", "Stripe webhooks", ["outcome"], registry=r
        )
        # Customers whose counted usage the detector of thresholds decided (usage_notices.py).
        self.usage_notice_customers = Counter(
            "meterline_entitlements_usage_notice_customers_total",
            "Touched customers decided for thresholds",
            registry=r,
        )
        # Customers marked by the aggregator and not yet decided, after the detector's last pass.
        self.usage_notice_backlog = Gauge(
            "meterline_entitlements_usage_notice_backlog",
            "Touched customers waiting for the threshold detector",
            registry=r,
        )

    def usage_notice_pass(self, decided: int, backlog: int) -> None:
        self.usage_notice_customers.inc(decided)
        self.usage_notice_backlog.set(backlog)
