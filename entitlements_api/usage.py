"""`GET /v1/usage`: usage series from the Postgres rollups (interface 2, `meterline.usage`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from entitlements_api.access import deps_of, principal
from meterline.errors import FieldError, NotFound, Unavailable, ValidationFailed
from meterline.inputs import IDENTIFIER, instant

router = APIRouter(tags=["usage"])
MAX_POINTS = 10_000
WINDOW_SPAN = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


@router.get("/v1/usage", summary="A meter's usage series from the rollups")
async def usage_series(
    request: Request,
    meter: str = Query(min_length=1, max_length=64, description="a meter key of the catalog"),
    customer: str | None = Query(
        None,
        min_length=1,
        max_length=128,
        pattern=IDENTIFIER,
        description="a customer; omitted: the tenant total",
    ),
    start: datetime = Query(alias="from", description="RFC 3339 with a zone, inclusive"),
    end: datetime = Query(alias="to", description="RFC 3339 with a zone, exclusive"),
    window: Literal["minute", "hour", "day"] = Query("hour"),
) -> Response:
    """`{"customer", "meter", "window", "series": [{"start", "end", "value", "count"}],
    "total"}` with ISO 8601 UTC times (scope `read`). At most 10,000 windows per call, times
    between 1970 and 9000; run on the read lane (`reads.py`): 429 with Retry-After while the
    tenant has a query in progress."""
    who = principal(request, "read")
    deps = deps_of(request)
    start, end = _instants(start, end)
    _check_range(start, end, window)
    found = deps.service.catalog(who.tenant_id).meter(meter)
    if found is None:
        raise NotFound(f"unknown meter {meter[:64]!r}: not in this tenant's catalog")
    if deps.usage_query is None:
        raise Unavailable("usage queries are not configured")
    query = deps.usage_query

    def read() -> bytes:
        series = query.series(who.tenant_id, customer, meter, found.aggregation, start, end, window)
        return orjson.dumps(series.as_dict())

    return Response(await deps.reads.run(who.tenant_id, read), media_type="application/json")


def _instants(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Both times in UTC; ValidationFailed lists each one without a zone or out of range."""
    errors, out = [], []
    for field, when in (("from", start), ("to", end)):
        try:
            out.append(instant(when))
        except ValueError as exc:
            errors.append(FieldError(field, str(exc)))
    if errors:
        raise ValidationFailed(errors)
    return out[0], out[1]


def _check_range(start: datetime, end: datetime, window: str) -> None:
    if end <= start:
        raise ValidationFailed([FieldError("to", "must be after from")])
    if (end - start) / WINDOW_SPAN[window] > MAX_POINTS:
        message = f"at most {MAX_POINTS} {window} windows per query; use a wider window"
        raise ValidationFailed([FieldError("window", message)])
