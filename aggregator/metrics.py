"""The aggregator's metrics: the closed list of names, each with what it means."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from meterline.metrics import service_registry


class AggregatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or service_registry()
        r = self.registry
        # Events read from Kafka, by outcome: counted (new in the ledger), duplicate, dead_letter.
        self.events = Counter(
            "meterline_aggregator_events", "Events processed", ["outcome"], registry=r
        )
        # Records per committed batch.
        self.batch_size = Histogram(
            "meterline_aggregator_batch_size",
            "Records per batch",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000),
            registry=r,
        )
        # Seconds from the batch's first record read to its view update done.
        self.batch_seconds = Histogram(
            "meterline_aggregator_batch_seconds",
            "Batch latency",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        # Records in each assigned partition not yet committed to Postgres.
        self.lag = Gauge("meterline_aggregator_lag", "Consumer lag", ["partition"], registry=r)
        # Messages sent to the dead-letter topic (also counted in events{outcome=dead_letter}).
        self.dead_letters = Counter("meterline_aggregator_dead_letters", "Dead letters", registry=r)
        # Rebuilds of the Redis view this process ran.
        self.rebuilds = Counter("meterline_aggregator_redis_rebuilds", "View rebuilds", registry=r)
        # View applies by outcome: applied, skipped, gap, empty, rebuilding.
        self.view_applies = Counter(
            "meterline_aggregator_view_applies", "View applies", ["outcome"], registry=r
        )
        # Retries after a Postgres, Redis or Kafka outage, by dependency.
        self.retries = Counter(
            "meterline_aggregator_retries", "Outage retries", ["dependency"], registry=r
        )
        # Batches refused because another consumer owns a partition (zombie fencing).
        self.fenced = Counter("meterline_aggregator_fenced_batches", "Fenced batches", registry=r)
        # Partitions stopped because a stored position and the log disagree, by kind:
        # beyond_log_end (the stored position is past the partition's end) or batch_start (a
        # batch did not start at the stored position). Each waits for `meterline offsets reset`.
        self.position_mismatches = Counter(
            "meterline_aggregator_position_mismatches",
            "Partitions stopped on a position mismatch",
            ["kind"],
            registry=r,
        )
        # Partitions of this process stopped now, waiting for an operator.
        self.halted = Gauge(
            "meterline_aggregator_halted_partitions", "Partitions stopped now", registry=r
        )
        # New incarnations of the topic seen (recreated, or a memory-only broker restarted):
        # their partitions are read from the start.
        self.incarnations = Counter(
            "meterline_aggregator_topic_incarnations", "New topic incarnations seen", registry=r
        )
