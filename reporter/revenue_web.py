"""The Revenue tab of /finance: MRR movements as stacked bars per month, the MRR and NRR
lines, the month table with the metered usage billed beside MRR (a column of its own, never
in MRR), and a drill-down to the customers behind a movement.

Server-rendered like the other /finance pages (reporter/web.py: same session, same headers,
no script): the charts are inline SVG whose geometry comes from reporter/revenue_charts.py,
and each bar segment is a link to `?month=YYYY-MM&kind=KIND`, which lists that movement's
customers. Query: `from`, `to` (YYYY-MM, default the 12 months ending this month), `month`
and `kind` for the drill-down; bad values get the error page naming the field.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from meterline.errors import FieldError, ValidationFailed
from meterline.revenue.postgres import PostgresRevenueEventStore
from reporter import revenue_charts as charts
from reporter import revenue_report as report
from reporter.postgres.sessions import PostgresSessionRows
from reporter.revenue import Kind
from reporter.sessions import SessionStore
from reporter.web import signed_in_page, signed_in_session


def mount(app: FastAPI, reporter: Any) -> None:
    """Add GET /finance/revenue to `app`."""
    settings = reporter.settings
    sessions = SessionStore(
        PostgresSessionRows(reporter.pool),
        reporter.clock,
        settings.session_idle_s,
        settings.session_max_s,
    )
    events = PostgresRevenueEventStore(reporter.pool)

    @app.get("/finance/revenue", response_class=HTMLResponse)
    def revenue_page(
        request: Request,
        start: str | None = Query(None, alias="from"),
        end: str | None = Query(None, alias="to"),
        month: str | None = None,
        kind: str | None = None,
    ) -> HTMLResponse:
        session = signed_in_session(request, sessions, "read")
        last = report.month_arg("to", end, reporter.clock.now().strftime("%Y-%m"))
        months = report.month_range(report.month_arg("from", start, report.shift(last, -11)), last)
        chosen = report.month_arg("month", month, "") or None
        tenant = session.principal.tenant_id
        states, invoices = events.states(tenant), events.invoices(tenant)
        return signed_in_page(
            "revenue.html", session, "", months=months,
            currencies=_currencies(states, invoices, months),
            drill=_drill(states, chosen, _kind(kind)),
        )  # fmt: skip


def _currencies(states: Any, invoices: Any, months: list[str]) -> list[dict[str, Any]]:
    rows = report.mrr_rows(states, months, invoices)
    nrr = report.nrr_series(states, months)
    out = []
    for currency in sorted({r["currency"] for r in rows}):
        mine = [r for r in rows if r["currency"] == currency]
        series = nrr.get(currency, [None] * len(months))
        out.append(
            {"currency": currency, "rows": mine, "bars": charts.movement_bars(mine),
             "lines": charts.mrr_lines(mine, series), "nrr": series[-1], "last": mine[-1]}
        )  # fmt: skip
    return out


def _drill(states: Any, month: str | None, kind: str | None) -> dict[str, Any] | None:
    if month is None:
        return None
    rows = report.movement_rows(states, month)
    if kind is not None:
        rows = [r for r in rows if r["kind"] == kind]
    return {"month": month, "kind": kind, "rows": rows, "totals": report.movement_totals(rows)}


def _kind(kind: str | None) -> str | None:
    if not kind:
        return None
    if kind not in {k.value for k in Kind}:
        names = ", ".join(k.value for k in Kind)
        raise ValidationFailed([FieldError("kind", f"must be one of {names}")])
    return kind
