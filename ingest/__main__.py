"""`python -m ingest`: read the settings once, connect, and serve with uvicorn until SIGTERM.

On SIGTERM uvicorn stops accepting connections and lets in-flight requests finish (up to
METERLINE_INGEST_GRACEFUL_TIMEOUT_S); the app's shutdown then flushes the producer.
"""

from __future__ import annotations

import logging.config
import sys

import uvicorn

from ingest.app import create_server
from ingest.protocol import protocol_for
from ingest.service import Sections, build
from meterline.errors import ConfigError
from meterline.http.guard import HttpSettings, guarded
from meterline.logs import log_config
from meterline.settings import (
    ServiceSettings,
    load_section,
)
from meterline.startup import settle_garbage_collector


def main() -> int:
    try:
        service = load_section(ServiceSettings)
        sections = Sections.load()
        http = load_section(HttpSettings)
        logging.config.dictConfig(log_config("ingest", service.log_level))
        deps = build(sections)
    except ConfigError as exc:
        print(f"ingest: {exc.message}", file=sys.stderr)
        return 2
    s = sections.ingest
    app = create_server(deps)
    settle_garbage_collector()
    uvicorn.run(
        app,
        host=service.host,
        port=s.port,
        loop="uvloop",
        # httptools; POST /v1/events taken by ingest.protocol; deadlines and sizes guarded
        http=guarded(protocol_for(app), http.limits(s.max_body_bytes)),
        log_config=log_config("ingest", service.log_level),
        access_log=False,
        timeout_graceful_shutdown=int(s.graceful_timeout_s),
        server_header=False,
        proxy_headers=False,  # ingest never reads client addresses; saves a layer per request
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
