"""The closed list of ingest's Prometheus metrics, registered on a registry of their own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from meterline.metrics import service_registry

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class IngestMetrics:
    """Every metric ingest exports; nothing else is registered."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or service_registry()
        r = self.registry
        # Requests to POST /v1/events by HTTP status.
        self.requests = Counter(
            "meterline_ingest_requests", "Event requests by status", ["status"], registry=r
        )
        # Wall time of POST /v1/events, from the first byte read to the response.
        self.request_seconds = Histogram(
            "meterline_ingest_request_seconds",
            "Event request latency",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Events acknowledged by the broker and answered as accepted.
        self.accepted = Counter("meterline_ingest_events_accepted", "Accepted events", registry=r)
        # Events answered as duplicates (repeated in the request or seen by the fast path).
        self.duplicates = Counter(
            "meterline_ingest_events_duplicate", "Duplicate events", registry=r
        )
        # Time from produce to the last delivery report of a request.
        self.produce_seconds = Histogram(
            "meterline_ingest_produce_seconds",
            "Produce latency per request",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Events being produced right now (bounded by METERLINE_INGEST_MAX_INFLIGHT_EVENTS).
        self.in_flight = Gauge("meterline_ingest_inflight_events", "Events in flight", registry=r)
        # Messages in the producer's local queue, not yet acknowledged.
        self.queue_depth = Gauge(
            "meterline_ingest_producer_queue_depth", "Producer queue depth", registry=r
        )
        # The limit of POST /v1/events requests in progress now (lower while answers are slow).
        self.concurrency_limit = Gauge(
            "meterline_ingest_concurrency_limit", "Requests admitted at once", registry=r
        )
        # How late ingest's event loop runs a timer, smoothed (ingest/fairness.py).
        self.loop_lag = Gauge(
            "meterline_ingest_event_loop_lag_seconds", "Event loop lag", registry=r
        )
        # Requests refused unread while the loop lagged: their tenant was above its share.
        self.over_share = Counter(
            "meterline_ingest_refused_over_share", "Requests refused above a fair share", registry=r
        )
        # Dedupe fast-path calls that failed or timed out (events then pass to the ledger).
        self.dedupe_errors = Counter(
            "meterline_ingest_dedupe_errors", "Dedupe store failures", registry=r
        )

    def watch_concurrency(self, limit: Callable[[], float]) -> None:
        """Read the limit of requests in progress (ingest/concurrency.py) at each scrape."""
        self.concurrency_limit.set_function(limit)

    def watch_loop_lag(self, lag: Callable[[], float]) -> None:
        """Read the event loop's lag (ingest/fairness.py) at each scrape."""
        self.loop_lag.set_function(lag)

    def watch_in_flight(self, count: Callable[[], int]) -> None:
        """Read the events in flight at each scrape (not set twice per request)."""
        self.in_flight.set_function(lambda: float(count()))

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Read the producer queue depth at each scrape."""
        self.queue_depth.set_function(lambda: float(depth()))
