"""The committed OpenAPI documents of the HTTP services, and how they are made from the code.

`python -m openapi` rewrites `openapi/<service>.json`; `python -m openapi --check` exits 1
when a committed document differs from the code's (as `tests/test_openapi.py` does).
Each app is built with stand-ins for what its routes use only per request: building a document
touches no database, broker or Stripe.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from fastapi import FastAPI

HERE = Path(__file__).resolve().parent
REGENERATE = "python -m openapi"


def _ingest() -> FastAPI:
    from ingest.app import Dependencies, create_app

    absent = cast(Any, None)
    return create_app(Dependencies(keys=absent, meters=absent, sink=absent))


def _entitlements() -> FastAPI:
    from entitlements_api.app import create_app
    from entitlements_api.metrics import Metrics

    return create_app(cast(Any, SimpleNamespace(metrics=Metrics())))


def _reporter() -> FastAPI:
    from meterline.clock import SystemClock
    from reporter.api import create_app
    from reporter.settings import ReporterSettings

    reporter = SimpleNamespace(
        settings=ReporterSettings.model_construct(), pool=None, store=None, clock=SystemClock()
    )
    return create_app(cast(Any, reporter))


SERVICES: dict[str, Callable[[], FastAPI]] = {
    "ingest": _ingest,
    "entitlements": _entitlements,
    "reporter": _reporter,
}


def document(service: str) -> dict[str, Any]:
    """The OpenAPI document `service`'s code describes now."""
    return SERVICES[service]().openapi()


def path(service: str) -> Path:
    return HERE / f"{service}.json"


def render(doc: dict[str, Any]) -> str:
    """The committed form: sorted keys, two-space indents, a final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale() -> list[str]:
    """The services whose committed document differs from the code's."""
    return [s for s in SERVICES if committed(s) != render(document(s))]


def committed(service: str) -> str:
    """The committed document's text ('' when there is none)."""
    return path(service).read_text() if path(service).is_file() else ""


def write() -> None:
    for service in SERVICES:
        path(service).write_text(render(document(service)))
