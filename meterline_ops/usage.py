"""`meterline usage query`, `meterline redis rebuild|verify`, `meterline dlq list|replay`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from meterline.catalog.model import Aggregation
from meterline.catalog.repository import PostgresCatalogRepository
from meterline.clock import SystemClock, from_ms
from meterline.errors import FieldError, ValidationFailed
from meterline.events import parse_timestamp
from meterline.kafka.dlq import DeadLetterPublisher, read_dead_letters
from meterline.postgres import Pool
from meterline.redis import connect as redis_connect
from meterline.settings import KafkaSettings, RedisSettings, load_section
from meterline.tenants import PostgresTenantRepository
from meterline.usage import UsageQuery
from meterline.values import plain
from meterline.view import RedisUsageView
from meterline.view.postgres.rebuild import rebuild
from meterline.view.postgres.verify import verify
from meterline_ops.common import database, friendly, out


class WindowName(StrEnum):
    minute = "minute"
    hour = "hour"
    day = "day"


def register(app: typer.Typer) -> None:
    usage = typer.Typer(no_args_is_help=True, help="Usage from the Postgres rollups.")
    usage.command("query")(usage_query)
    app.add_typer(usage, name="usage")
    rds = typer.Typer(no_args_is_help=True, help="The Redis real-time view.")
    rds.command("rebuild")(redis_rebuild)
    rds.command("verify")(redis_verify)
    app.add_typer(rds, name="redis")
    dlq = typer.Typer(no_args_is_help=True, help="The dead-letter topic.")
    dlq.command("list")(dlq_list)
    dlq.command("replay")(dlq_replay)
    app.add_typer(dlq, name="dlq")


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


def _aggregations(pool: Pool) -> Callable[[int, str], Aggregation]:
    repo = PostgresCatalogRepository(pool)
    cache: dict[int, dict[str, Aggregation]] = {}

    def aggregation_of(tenant_id: int, meter: str) -> Aggregation:
        if tenant_id not in cache:
            current = repo.current(tenant_id)
            cache[tenant_id] = (
                {} if current is None else {m.key: m.aggregation for m in current[1].meters}
            )
        return cache[tenant_id].get(meter, Aggregation.SUM)

    return aggregation_of


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
        agg = _aggregations(pool)(tenant_id, meter)
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


def _view(pool: Pool | None = None) -> RedisUsageView:
    """The view; with `pool`, parts older than its keys are read from the rollups."""
    s = load_section(RedisSettings)
    archive = None if pool is None else UsageQuery(pool)
    return RedisUsageView(redis_connect(s.url), s.key_prefix, archive=archive)


@friendly
def redis_rebuild() -> None:
    """Rebuild the Redis view from Postgres now (safe while aggregators run)."""
    view = _view()
    with database() as pool:
        report = rebuild(view, pool, _aggregations(pool))
    if report is None:
        out("another process rebuilt the view meanwhile")
    else:
        out(
            f"rebuilt from {report.rows} rollup rows, {report.streams} partitions "
            f"in {report.seconds:.2f}s ({report.reservations_dropped} counted reservations dropped)"
        )


@friendly
def redis_verify(tenant: str | None = typer.Option(None, help="Only this tenant.")) -> None:
    """Compare the Redis view with Postgres; print every mismatch; exit 1 if there is one."""
    with database() as pool:
        view = _view(pool)
        tenant_id = None if tenant is None else PostgresTenantRepository(pool).get_tenant(tenant).id
        found = verify(view, pool, _aggregations(pool), SystemClock().now_ms(), tenant_id)
    for m in found:
        out(str(m))
    if found:
        out(f"{len(found)} mismatch(es)")
        raise typer.Exit(1)
    out("the Redis view matches Postgres")


@friendly
def dlq_list(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Every message in the dead-letter topic, with the reason it is there."""
    kafka = load_section(KafkaSettings)
    for letter in read_dead_letters(kafka.bootstrap, kafka.dlq_topic):
        doc: dict[str, Any] = {
            "partition": letter.partition,
            "offset": letter.offset,
            "reason": letter.reason,
            "source": f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}",
            "value": (letter.value or b"").decode(errors="replace")[:500],
        }
        out(
            orjson.dumps(doc).decode()
            if as_json
            else f"{doc['partition']}@{doc['offset']} {doc['source']}: {doc['reason']}"
        )


@friendly
def dlq_replay(
    partition: int | None = typer.Option(None, help="Only letters of this DLQ partition..."),
    offset: int | None = typer.Option(None, help="...at this offset."),
) -> None:
    """Send dead letters back to the usage topic (after the cause is fixed). Events already
    counted are dropped as duplicates by the ledger; letters still bad come back here."""
    kafka = load_section(KafkaSettings)
    letters = [
        x
        for x in read_dead_letters(kafka.bootstrap, kafka.dlq_topic)
        if (partition is None or x.partition == partition)
        and (offset is None or x.offset == offset)
    ]
    publisher = DeadLetterPublisher(kafka.bootstrap, kafka.dlq_topic)
    publisher.republish(kafka.topic, letters)
    publisher.close()
    out(f"replayed {len(letters)} message(s) to {kafka.topic}")
