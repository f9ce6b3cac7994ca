"""`python -m reporter`: read the settings once, connect, schedule, serve until SIGTERM.

On SIGTERM uvicorn stops accepting connections and lets in-flight requests finish; then the
scheduler is stopped — a push or reconciliation in progress finishes first (its ledger rows
are durable either way) — then the webhook dispatcher (an attempt cut short was never settled
and is sent again later, with the same `webhook-id`), and the pools are closed.
"""

from __future__ import annotations

import logging.config
import sys

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from meterline.dunning import DunningSettings
from meterline.errors import ConfigError
from meterline.http.guard import HttpSettings, guarded
from meterline.logs import log_config
from meterline.notify.settings import WebhookSettings
from meterline.postgres.leadership import Leadership, connector
from meterline.settings import DatabaseSettings, ServiceSettings, StripeSettings, load_section
from meterline.startup import settle_garbage_collector
from reporter.api import create_app
from reporter.dispatch import open_dispatcher
from reporter.postgres.flushes import PostgresFlushWatch
from reporter.scheduler import Scheduler
from reporter.service import build
from reporter.settings import ReporterSettings


def main() -> int:
    try:
        service = load_section(ServiceSettings)
        own = load_section(ReporterSettings)
        http = load_section(HttpSettings)
        logging.config.dictConfig(log_config("reporter", service.log_level))
        database, webhooks = load_section(DatabaseSettings), load_section(WebhookSettings)
        reporter = build(
            database, load_section(StripeSettings), own, webhooks=webhooks,
            dunning=load_section(DunningSettings),
        )  # fmt: skip
        dispatching = (
            open_dispatcher(database, webhooks, reporter.webhook_metrics)
            if webhooks.dispatcher_enabled
            else None
        )
    except ConfigError as exc:
        print(f"reporter: {exc.message}", file=sys.stderr)
        return 2
    leadership = Leadership(connector(database.url), reporter.metrics.scheduler_active.set)
    scheduler = Scheduler(
        own, reporter.clock, PostgresFlushWatch(reporter.pool), reporter.push,
        reporter.reconcile_nightly,
        tick_s=own.tick_s, on_blocked=reporter.flush_blocked, on_tick=reporter.tick,
        leader=leadership,
    )  # fmt: skip
    config = uvicorn.Config(
        create_app(reporter),
        host=service.host,
        port=service.reporter_port,
        http=guarded(HttpToolsProtocol, http.limits()),  # deadlines and sizes guarded
        log_config=log_config("reporter", service.log_level),
        access_log=False,
        timeout_graceful_shutdown=30,
        server_header=False,
    )
    settle_garbage_collector()
    if own.scheduler_enabled:
        scheduler.start()
    if dispatching:
        dispatching[0].start()
    try:
        uvicorn.Server(config).run()
    finally:
        scheduler.stop()
        if dispatching:
            dispatching[0].stop()
            dispatching[1].close()
        leadership.release()
        reporter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
