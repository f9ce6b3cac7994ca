"""`python -m aggregator`: read settings once, wire the parts, serve HTTP, consume until SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from aggregator import http
from aggregator.catalog_cache import AggregationCache
from aggregator.faults import hooks_from_spec
from aggregator.ledger import LedgerWriter
from aggregator.metrics import AggregatorMetrics
from aggregator.progress import Progress
from aggregator.retry import Retrier
from aggregator.settings import AggregatorSettings
from aggregator.viewsync import ViewSync
from aggregator.worker import Worker, WorkerParts
from meterline import logs
from meterline.catalog.repository import PostgresCatalogRepository
from meterline.errors import ConfigError
from meterline.kafka.consumer import PositionedConsumer, Positions, Revoked
from meterline.kafka.dlq import DeadLetterPublisher
from meterline.postgres import connect, open_pool
from meterline.redis import connect as redis_connect
from meterline.settings import (
    DatabaseSettings,
    KafkaSettings,
    RedisSettings,
    ServiceSettings,
    load_section,
)
from meterline.view import RedisUsageView
from meterline.view.rebuild import rebuild, stored_offsets

log = logging.getLogger("aggregator")


def main() -> int:
    try:
        kafka = load_section(KafkaSettings)
        db = load_section(DatabaseSettings)
        rds = load_section(RedisSettings)
        service = load_section(ServiceSettings)
        own = load_section(AggregatorSettings)
        hooks = hooks_from_spec(own.crash_at)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    logs.configure("aggregator", service.log_level)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    pool = open_pool(db.url, max_size=2, name="aggregator")
    metrics = AggregatorMetrics()
    progress = Progress(own.stall_s)
    server = http.serve(service.host, own.port, progress, metrics)
    aggregation_of = AggregationCache(PostgresCatalogRepository(pool), own.catalog_ttl_s)
    view = RedisUsageView(redis_connect(rds.url), rds.key_prefix)
    retrier = Retrier(metrics, stopping)

    def consumer(positions: Positions, revoked: Revoked) -> PositionedConsumer:
        extra: dict[str, Any] = {"max.poll.interval.ms": 600_000}
        return PositionedConsumer(
            kafka.bootstrap, own.group_id, kafka.topic, positions, revoked, **extra
        )

    parts = WorkerParts(
        topic=kafka.topic,
        batch_size=own.batch_size,
        batch_ms=own.batch_ms,
        consumer_factory=consumer,
        writer=LedgerWriter(lambda: connect(db.url), own.group_id, kafka.topic),
        dlq=DeadLetterPublisher(kafka.bootstrap, kafka.dlq_topic),
        view_sync=ViewSync(
            view,
            lambda: rebuild(view, pool, aggregation_of, flag_ttl_s=own.rebuild_ttl_s),
            retrier,
            metrics,
            own.group_id,
            kafka.topic,
            stopping,
        ),
        stored_offsets=lambda: stored_offsets(pool),
        aggregation_of=aggregation_of,
        retrier=retrier,
        metrics=metrics,
        progress=progress,
        hooks=hooks,
        stopping=stopping,
    )
    log.info("aggregator starting", extra={"topic": kafka.topic, "group": own.group_id})
    try:
        Worker(parts).run()
    finally:
        server.shutdown()
        parts.dlq.close()
        pool.close()
    log.info("aggregator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
