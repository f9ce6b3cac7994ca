"""`meterline redis rebuild|verify`: the Redis real-time view against Postgres."""

from __future__ import annotations

import typer

from meterline.clock import SystemClock
from meterline.postgres import Pool
from meterline.redis import connect as redis_connect
from meterline.settings import RedisSettings, load_section
from meterline.tenants import PostgresTenantRepository
from meterline.usage import UsageQuery
from meterline.view import RedisUsageView
from meterline.view.postgres.rebuild import rebuild
from meterline.view.postgres.verify import verify
from meterline_ops.common import aggregations_of, database, friendly, out


def register(app: typer.Typer) -> None:
    rds = typer.Typer(no_args_is_help=True, help="The Redis real-time view.")
    rds.command("rebuild")(redis_rebuild)
    rds.command("verify")(redis_verify)
    app.add_typer(rds, name="redis")


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
        report = rebuild(view, pool, aggregations_of(pool))
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
        found = verify(view, pool, aggregations_of(pool), SystemClock().now_ms(), tenant_id)
    for m in found:
        out(str(m))
    if found:
        out(f"{len(found)} mismatch(es)")
        raise typer.Exit(1)
    out("the Redis view matches Postgres")
