"""The example app: sign-up, pricing, checkout, the usage dashboard, plan changes with their
preview, cancel and resume (`routes.py`, `plan_routes.py`). Each page reads what it shows from
Meterline at request time (`meterline_api.py`); the app itself keeps nothing but the signed
account cookie."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response

from . import plan_routes, routes
from .accounts import Cookies
from .meterline_api import Meterline, MeterlineRefused
from .pages import environment
from .settings import Settings
from .web import SignedOut, go, render


def create_app(settings: Settings, meterline: Meterline | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.meterline.close()

    app = FastAPI(
        title="Meterline example: a SaaS app", docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.meterline = meterline or Meterline(settings.entitlements_url, settings.api_key)
    app.state.cookies = Cookies(settings.cookie_secret)
    app.state.templates = environment()
    app.include_router(routes.router)
    app.include_router(plan_routes.router)

    @app.exception_handler(SignedOut)
    async def signed_out(_request: Request, _exc: SignedOut) -> Response:
        return go("/")

    @app.exception_handler(MeterlineRefused)
    async def refused(request: Request, exc: MeterlineRefused) -> Response:
        """Meterline's own message on an error page (a 409 from a refusal, 502 from an outage)."""
        return render(request, "error.html", 502 if exc.status >= 500 else 409, error=exc)

    return app
