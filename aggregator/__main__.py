"""`python -m aggregator`: read settings once, wire the parts, serve HTTP, consume until SIGTERM.

Postgres being down is an outage at any time, start-up included: the process serves HTTP at
once and waits for Postgres with the same retries as later on, rather than exiting (a crash loop
under a supervisor that makes no progress either). Only a malformed URL, or a schema older than
the code (checked as soon as Postgres answers), is a configuration error: exit status 2.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from aggregator import http
from aggregator.catalog_cache import AggregationCache
from aggregator.faults import hooks_from_spec
from aggregator.metrics import AggregatorMetrics
from aggregator.postgres.ledger import LedgerWriter
from aggregator.progress import Progress
from aggregator.retry import Retrier, ShuttingDown
from aggregator.settings import AggregatorSettings
from aggregator.viewsync import ViewSync
from aggregator.worker import Worker, WorkerParts
from meterline import logs
from meterline.catalog.repository import PostgresCatalogRepository
from meterline.errors import ConfigError
from meterline.kafka.admin import TopicIncarnation
from meterline.kafka.consumer import PositionedConsumer, Positions, Revoked
from meterline.kafka.dlq import DeadLetterPublisher
from meterline.postgres import background_pool, check_url, connect_or_outage
from meterline.postgres.schema import require_current_schema_in
from meterline.redis import connect as redis_connect
from meterline.settings import (
    DatabaseSettings,
    KafkaSettings,
    RedisSettings,
    ServiceSettings,
    load_section,
)
from meterline.startup import settle_garbage_collector
from meterline.view import RedisUsageView
from meterline.view.postgres.rebuild import rebuild, stored_offsets

log = logging.getLogger("aggregator")

# How long a thread may hold the GIL while another waits for it (Python's default is 5 ms). The
# committer wakes from a Postgres or Redis round trip a dozen times per batch while the consumer
# thread decodes in C loops that never let go of the GIL on their own: each wake-up waited up to
# the whole interval. At 1 ms a 200,000-event run went from 123k to 143k events/s (median of 4
# pairs, better in every pair); at 0.2 ms the switching itself cost more than it saved.
SWITCH_INTERVAL_S = 0.001


def main() -> int:
    try:
        kafka = load_section(KafkaSettings)
        db = load_section(DatabaseSettings)
        rds = load_section(RedisSettings)
        service = load_section(ServiceSettings)
        own = load_section(AggregatorSettings)
        hooks = hooks_from_spec(own.crash_at)
        check_url(db.url)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    logs.configure("aggregator", service.log_level)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    metrics = AggregatorMetrics()
    progress = Progress(own.stall_s)
    server = http.serve(service.host, own.port, progress, metrics)
    pool = background_pool(db.url, max_size=2, name="aggregator")
    aggregation_of = AggregationCache(PostgresCatalogRepository(pool), own.catalog_ttl_s)
    view = RedisUsageView(redis_connect(rds.url), rds.key_prefix, touched=own.mark_touched)
    retrier = Retrier(metrics, stopping, progress=progress)

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
        writer=LedgerWriter(lambda: connect_or_outage(db.url), own.group_id, kafka.topic),
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
        incarnation=TopicIncarnation(kafka.bootstrap, kafka.topic),
    )
    log.info("aggregator starting", extra={"topic": kafka.topic, "group": own.group_id})
    settle_garbage_collector()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        retrier.call(lambda: require_current_schema_in(pool, "aggregator"), "postgres")
        Worker(parts).run()
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ShuttingDown:
        return 0
    finally:
        server.shutdown()
        parts.dlq.close()
        pool.close()
    log.info("aggregator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
