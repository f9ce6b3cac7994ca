"""Ingest's ASGI app for granian (`bench/bench_http_server.py`): the settings and dependencies
`python -m ingest` builds, served by granian instead of uvicorn and `ingest.protocol`.

A factory (`granian --factory bench.granian_ingest:app`), so the worker process builds it.
"""

from __future__ import annotations

import logging.config

from ingest.app import create_server
from ingest.endpoint import EventsEndpoint
from ingest.service import Sections, build
from meterline.logs import log_config
from meterline.settings import (
    ServiceSettings,
    load_section,
)


def app() -> EventsEndpoint:
    logging.config.dictConfig(log_config("ingest", load_section(ServiceSettings).log_level))
    return create_server(build(Sections.load()))
