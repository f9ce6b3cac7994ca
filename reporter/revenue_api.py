"""The revenue API (scope `read`): MRR and ARR per month, a month's movements, retention.

`GET /v1/revenue/mrr?from=YYYY-MM&to=YYYY-MM` (default: the 12 months ending this month),
`GET /v1/revenue/movements?month=YYYY-MM` and `GET /v1/revenue/retention?month=YYYY-MM`
(default: this month), each as JSON or, with `format=csv`, as CSV written through
`meterline.csv_export` (customer ids neutralised against formula injection). Amounts are minor
units of their currency; NRR and GRR are ratios (1.05 = 105%). Bad input is a 422 naming the
field. The figures come from the tenant's revenue events (`meterline.revenue`) by the
definitions of `reporter.revenue`.

`mrr` gives each month per currency: start, new, expansion, contraction, churn, reactivation,
end MRR and ARR (at most 120 months), and `metered`: the metered usage billed on invoices
closed that month, shown beside MRR and never counted in it, its movements or ARR;
`movements` each movement with its customer, and totals per kind with their customers;
`retention` trailing NRR and GRR per currency, and cohorts by first month. Ratios are strings
with six decimals (`"1.380282"` = 138.03%), null without a starting MRR. A bad month, range or
format is a 422 naming `from`, `to`, `month` or `format`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import PlainTextResponse, Response

from meterline import csv_export
from meterline.errors import FieldError, ValidationFailed
from meterline.revenue.postgres import PostgresRevenueEventStore
from meterline.revenue.store import RevenueEventStore
from reporter import revenue_report as report
from reporter.auth import Reader
from reporter.revenue_schemas import MovementsOut, MrrOut, RetentionOut, answers

MonthQuery = Query(description="a month as YYYY-MM")


def mount(app: FastAPI, reporter: Any, store: RevenueEventStore | None = None) -> None:
    """Add the three revenue endpoints to `app` (events from `store`, else Postgres)."""
    events = store or PostgresRevenueEventStore(reporter.pool)

    def this_month() -> str:
        return str(reporter.clock.now().strftime("%Y-%m"))

    @app.get("/v1/revenue/mrr", tags=["revenue"], responses=answers(MrrOut))
    def mrr(
        who: Reader,
        start: Annotated[
            str | None, Query(alias="from", description="first month, YYYY-MM")
        ] = None,
        end: Annotated[str | None, Query(alias="to", description="last month, YYYY-MM")] = None,
        format: str = "json",
    ) -> Any:
        """MRR (start, movements by kind, end) and ARR per month and currency, and the
        metered usage billed on invoices closed that month (apart: never in MRR)."""
        last = report.month_arg("to", end, this_month())
        months = report.month_range(report.month_arg("from", start, report.shift(last, -11)), last)
        tenant = who.tenant_id
        rows = report.mrr_rows(events.states(tenant), months, events.invoices(tenant))
        if _csv(format):
            return _csv_file("mrr", report.MRR_COLUMNS, rows)
        return {"from": months[0], "to": last, "data": rows}

    @app.get("/v1/revenue/movements", tags=["revenue"], responses=answers(MovementsOut))
    def month_movements(
        who: Reader, month: Annotated[str | None, MonthQuery] = None, format: str = "json"
    ) -> Any:
        """The month's MRR movements, each with its customer, and their totals per kind."""
        chosen = report.month_arg("month", month, this_month())
        rows = report.movement_rows(events.states(who.tenant_id), chosen)
        if _csv(format):
            return _csv_file(f"movements-{chosen}", report.MOVEMENT_COLUMNS, rows)
        return {"month": chosen, "data": rows, "totals": report.movement_totals(rows)}

    @app.get("/v1/revenue/retention", tags=["revenue"], responses=answers(RetentionOut))
    def retention(
        who: Reader, month: Annotated[str | None, MonthQuery] = None, format: str = "json"
    ) -> Any:
        """Trailing-12-month NRR and GRR per currency, and MRR cohorts by first month."""
        chosen = report.month_arg("month", month, this_month())
        found = report.retention_report(events.states(who.tenant_id), chosen)
        if _csv(format):
            return _csv_file(f"retention-{chosen}", RETENTION_COLUMNS, _retention_rows(found))
        return found


RETENTION_COLUMNS = (
    "row", "currency", "month", "starting_mrr", "ending_mrr", "contraction", "churn", "nrr",
    "grr", "cohort", "cohort_mrr",
)  # fmt: skip


def _retention_rows(found: dict[str, Any]) -> list[dict[str, Any]]:
    """One `retention` row per currency, then one `cohort` row per cohort and month."""
    rows = [{"row": "retention", "month": found["month"], **r} for r in found["retention"]]
    for c in found["cohorts"]:
        for month, mrr in zip(c["months"], c["mrr"], strict=False):
            rows.append(
                {"row": "cohort", "currency": c["currency"], "month": month,
                 "cohort": c["cohort"], "cohort_mrr": mrr}
            )  # fmt: skip
    return rows


def _csv(format: str) -> bool:
    if format not in ("json", "csv"):
        raise ValidationFailed([FieldError("format", "must be json or csv")])
    return format == "csv"


def _csv_file(name: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Response:
    text = csv_export.to_csv(columns, ([r.get(c) for c in columns] for r in rows))
    headers = {"Content-Disposition": f'attachment; filename="meterline-revenue-{name}.csv"'}
    return PlainTextResponse(text, media_type="text/csv", headers=headers)
