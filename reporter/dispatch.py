"""The webhook dispatcher as the reporter runs it, and `python -m reporter.dispatch` alone.

The reporter service starts a dispatcher beside its scheduler
(`METERLINE_WEBHOOK_DISPATCHER_ENABLED`, on by default). `python -m reporter.dispatch` runs
only the dispatcher, no HTTP, until SIGTERM or SIGINT: more delivery capacity apart from the
API, or a dispatcher to kill in tests. Either way the dispatcher has its own pool (a worker
holds a connection while its request lasts).
"""

from __future__ import annotations

import logging.config
import signal
import sys
import threading

from prometheus_client import CollectorRegistry

from meterline.errors import ConfigError
from meterline.logs import log_config
from meterline.metrics import service_registry
from meterline.notify.dispatcher import Dispatcher
from meterline.notify.metrics import WebhookMetrics
from meterline.notify.settings import WebhookSettings
from meterline.postgres import Pool, open_pool
from meterline.settings import DatabaseSettings, ServiceSettings, load_section


def open_dispatcher(
    database: DatabaseSettings, settings: WebhookSettings, metrics: WebhookMetrics
) -> tuple[Dispatcher, Pool]:
    pool = open_pool(database.url, max_size=settings.workers + 1, name="webhooks")
    return Dispatcher(pool, settings, metrics), pool


def main() -> int:
    try:
        service = load_section(ServiceSettings)
        logging.config.dictConfig(log_config("webhooks", service.log_level))
        registry: CollectorRegistry = service_registry()
        dispatcher, pool = open_dispatcher(
            load_section(DatabaseSettings), load_section(WebhookSettings), WebhookMetrics(registry)
        )
    except ConfigError as exc:
        print(f"dispatch: {exc.message}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    dispatcher.start()
    done.wait()
    dispatcher.stop()
    pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
