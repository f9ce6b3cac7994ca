"""`meterline usage query`: a meter's usage per window, from the Postgres rollups."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

import orjson
import typer
from rich.console import Console
from rich.table import Table

from meterline.clock import from_ms
from meterline.errors import FieldError, ValidationFailed
from meterline.events import parse_timestamp
from meterline.tenants import PostgresTenantRepository
from meterline.usage import UsageQuery
from meterline.values import plain
from meterline_ops.common import aggregations_of, database, friendly, out


class WindowName(StrEnum):
    minute = "minute"
    hour = "hour"
    day = "day"


def register(app: typer.Typer) -> None:
    usage = typer.Typer(no_args_is_help=True, help="Usage from the Postgres rollups.")
    usage.command("query")(usage_query)
    app.add_typer(usage, name="usage")


def _when(text: str, option: str) -> datetime:
    ms = parse_timestamp(text)
    if ms is None:
        try:
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            raise ValidationFailed(
                [FieldError(option, "must be RFC 3339 (2026-11-21T10:00:00Z), a date or epoch ms")]
            ) from None
    return from_ms(ms)


@friendly
def usage_query(
    tenant: str = typer.Option(..., help="Tenant name."),
    meter: str = typer.Option(..., help="Meter key."),
    start: str = typer.Option(..., "--from", help="Start (RFC 3339, a date, or epoch ms)."),
    end: str = typer.Option(..., "--to", help="End, exclusive."),
    window: WindowName = typer.Option(WindowName.hour, help="minute, hour or day (UTC)."),
    customer: str | None = typer.Option(None, help="One customer; the tenant's total if omitted."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (same shape as GET /v1/usage)."),
) -> None:
    """Usage of a meter per window, from Postgres."""
    lo, hi = _when(start, "from"), _when(end, "to")
    with database() as pool:
        tenant_id = PostgresTenantRepository(pool).get_tenant(tenant).id
        agg = aggregations_of(pool)(tenant_id, meter)
        series = UsageQuery(pool).series(tenant_id, customer, meter, agg, lo, hi, window.value)
    doc = series.as_dict()
    if as_json:
        out(orjson.dumps(doc).decode())
        return
    table = Table(
        "start", "end", "value", "count", title=f"{meter} ({customer or 'all customers'})"
    )
    for p, point in zip(doc["series"], series.points, strict=True):
        table.add_row(p["start"], p["end"], plain(point.value), str(p["count"]))
    Console().print(table)
    out(f"total {plain(series.total)}")
