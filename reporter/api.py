"""The reporter's HTTP app: health, metrics, the finance API, and the /finance pages.

API keys: `read` scope for GET endpoints, `admin` for anything that changes state (status
changes, repairs, runs). Domain errors map to HTTP in one place (`_domain_error`); bad input
is always a 4xx with a message, never a 500.

Routes: `GET /v1/reconciliation/runs`, `POST /v1/reconciliation/runs {"date"}`,
`GET /v1/reconciliation/alerts?status=open&kind=&format=json|csv`,
`GET /v1/reconciliation/alerts.csv`, `GET /v1/reconciliation/alerts/{id}` (with drill-down and
the repairs offered), `POST .../{id}/acknowledge|resolve {"note"}`, `POST .../{id}/repair
{"action"}`, `POST /v1/reports/run {"flush_until"?}`; `/healthz`, `/readyz`, `/metrics`; the
revenue routes (`revenue_api.py`) and the webhooks admin API (`webhooks_api.py`). A key
without `read` (or `admin`) is told it lacks `read`. Bad input is a 422 naming the field
(`meterline/inputs.py`): notes hold no control character but tabs and line breaks, `date` and
`flush_until` lie in 1970-9000 (`flush_until` with a zone, at most 5 minutes ahead). No
trailing-slash redirects: they echoed the Host header.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from meterline.errors import FieldError, MeterlineError, ValidationFailed
from meterline.http.openapi import api_version, declare_bearer, hide, operation_id
from meterline.inputs import FREE_TEXT, Day, Instant, friendly_message
from meterline.notify.dispatcher import observe as observe_webhooks
from meterline.postgres import ping
from reporter import revenue_api, revenue_web, web
from reporter.alerts import to_csv
from reporter.auth import Admin, Reader
from reporter.drilldown import drill_down
from reporter.service import Reporter
from reporter.webhooks_api import mount as mount_webhooks

log = logging.getLogger("reporter.api")
FUTURE = dt.timedelta(minutes=5)


class NoteBody(BaseModel):
    note: str | None = Field(default=None, max_length=2000, pattern=FREE_TEXT)


class RepairBody(BaseModel):
    action: str = Field(min_length=1, max_length=20)


class PushBody(BaseModel):
    flush_until: Instant | None = None


class RunBody(BaseModel):
    day: Day | None = Field(default=None, alias="date")


def create_app(reporter: Reporter) -> FastAPI:
    app = FastAPI(
        title="Meterline reporter",
        version=api_version(),
        generate_unique_id_function=operation_id,
        redirect_slashes=False,
    )
    app.state.reporter = reporter
    app.add_exception_handler(MeterlineError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _bad_request)  # type: ignore[arg-type]
    _operations(app, reporter)
    _finance_api(app, reporter)
    mount_webhooks(app)
    revenue_api.mount(app, reporter)
    web.mount(app, reporter)
    revenue_web.mount(app, reporter)
    hide(app, "/finance")
    declare_bearer(app)
    return app


def _operations(app: FastAPI, reporter: Reporter) -> None:
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            ping(reporter.pool)
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "postgres": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    def metrics() -> Response:
        reporter.metrics.open_alerts.set(reporter.store.open_count())
        observe_webhooks(reporter.pool, reporter.webhook_metrics)
        return Response(generate_latest(reporter.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _finance_api(app: FastAPI, reporter: Reporter) -> None:
    store = reporter.store

    @app.get("/v1/reconciliation/runs")
    def runs(who: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
        return {"data": [r.as_dict() for r in store.runs(who.tenant_id, limit)]}

    @app.post("/v1/reconciliation/runs")
    def run_now(who: Admin, body: RunBody) -> dict[str, Any]:
        day = body.day or reporter.clock.now().date()
        results = reporter.reconciler.run(day, "manual", [who.tenant_id])
        return {"data": [store.runs(who.tenant_id, 1)[0].as_dict()] if results else []}

    @app.get("/v1/reconciliation/alerts")
    def alerts(
        who: Reader,
        status: str | None = None,
        kind: str | None = None,
        format: str = "json",
    ) -> Any:
        found = store.alerts(who.tenant_id, status, kind)
        if format == "csv":
            return _csv(to_csv(found))
        if format != "json":
            raise ValidationFailed([FieldError("format", "must be json or csv")])
        return {"data": [a.as_dict() for a in found], "totals": store.totals(who.tenant_id)}

    @app.get("/v1/reconciliation/alerts.csv")
    def alerts_csv(who: Reader, status: str | None = None) -> Response:
        return _csv(to_csv(store.alerts(who.tenant_id, status)))

    @app.get("/v1/reconciliation/alerts/{alert_id}")
    def alert(who: Reader, alert_id: int) -> dict[str, Any]:
        found = store.alert(who.tenant_id, alert_id)
        return {
            **found.as_dict(),
            "drilldown": drill_down(reporter.pool, reporter.summaries, found),
            "repairs_offered": reporter.repairs.offers(found),
            "repairs": [_jsonable(r) for r in store.repairs(alert_id)],
        }

    @app.post("/v1/reconciliation/alerts/{alert_id}/acknowledge")
    def acknowledge(who: Admin, alert_id: int, body: NoteBody | None = None) -> dict[str, Any]:
        note = body.note if body else None
        return store.transition(who.tenant_id, alert_id, "acknowledged", note).as_dict()

    @app.post("/v1/reconciliation/alerts/{alert_id}/resolve")
    def resolve(who: Admin, alert_id: int, body: NoteBody | None = None) -> dict[str, Any]:
        note = body.note if body else None
        return store.transition(who.tenant_id, alert_id, "resolved", note).as_dict()

    @app.post("/v1/reconciliation/alerts/{alert_id}/repair")
    def repair(who: Admin, alert_id: int, body: RepairBody) -> dict[str, Any]:
        found = store.alert(who.tenant_id, alert_id)
        outcome = reporter.repairs.apply(found, body.action, who.key_id)
        return {"alert": found.id, "action": body.action, "outcome": outcome}

    @app.post("/v1/reports/run")
    def push_now(who: Admin, body: PushBody | None = None) -> dict[str, Any]:
        until = body.flush_until if body else None
        if until is not None and until > reporter.clock.now() + FUTURE:
            message = "must be at most 5 minutes ahead"
            raise ValidationFailed([FieldError("flush_until", message)])
        report = reporter.pusher.run([who.tenant_id], until)
        return {"status": report.status, **{k: v for k, v in vars(report).items() if k != "errors"}}


def _csv(text: str) -> Response:
    headers = {"Content-Disposition": 'attachment; filename="meterline-alerts.csv"'}
    return PlainTextResponse(text, media_type="text/csv", headers=headers)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}


async def _domain_error(request: Request, exc: MeterlineError) -> Response:
    if request.url.path.startswith("/finance"):
        return web.login_redirect(request) if exc.status == 401 else web.error_page(exc)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
    errors = [
        FieldError(".".join(str(p) for p in e["loc"] if p != "body") or "body", friendly_message(e))
        for e in exc.errors()
    ]
    return JSONResponse(ValidationFailed(errors).body(), status_code=422)
