"""`python -m entitlements_api`: read the settings once, connect, serve until SIGTERM.

On SIGTERM uvicorn stops accepting connections and lets in-flight requests finish (up to
METERLINE_ENTITLEMENTS_DRAIN_SECONDS); the app's shutdown then flushes the producer and closes
the pools.
"""

from __future__ import annotations

import logging.config
import sys

import uvicorn

from entitlements_api.app import create_server
from entitlements_api.protocol import protocol_for
from entitlements_api.settings import EntitlementsSettings
from entitlements_api.wiring import build
from meterline.dunning import DunningSettings
from meterline.errors import ConfigError
from meterline.http.guard import HttpSettings, guarded
from meterline.logs import log_config
from meterline.settings import ServiceSettings, load_section, load_settings
from meterline.startup import settle_garbage_collector


def main() -> int:
    try:
        service = load_section(ServiceSettings)
        own = load_section(EntitlementsSettings)
        http = load_section(HttpSettings)
        logging.config.dictConfig(log_config("entitlements_api", service.log_level))
        deps = build(load_settings(), own, dunning=load_section(DunningSettings))
    except ConfigError as exc:
        print(f"entitlements_api: {exc.message}", file=sys.stderr)
        return 2
    app = create_server(deps)
    settle_garbage_collector()
    uvicorn.run(
        app,
        host=service.host,
        port=own.port,
        loop="uvloop",
        # httptools, cached checks answered inline; deadlines and sizes guarded
        http=guarded(protocol_for(app), http.limits()),
        log_config=log_config("entitlements_api", service.log_level),
        access_log=False,
        timeout_graceful_shutdown=int(own.drain_seconds),
        server_header=False,
        proxy_headers=False,  # client addresses are never read; saves a layer per ASGI request
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
