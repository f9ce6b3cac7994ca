"""`meterline retention run [--dry-run]`: delete what every growing table keeps past its
retention (meterline/postgres/retention.py), one line per table of what went or would go."""

from __future__ import annotations

import typer

from meterline.clock import SystemClock
from meterline.postgres import connect
from meterline.postgres.retention import Outcome, RetentionSettings, run
from meterline.settings import load_section
from meterline_ops.common import database_url, friendly, out


def register(app: typer.Typer) -> None:
    retention = typer.Typer(no_args_is_help=True, help="Delete data past its retention.")
    retention.command("run")(retention_run)
    app.add_typer(retention, name="retention")


@friendly
def retention_run(
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; delete nothing."),
) -> None:
    """Drop ledger partitions and delete rows past each table's retention (`METERLINE_RETENTION_*`),
    never what an open billing period or a reconciliation still due reads. Safe to run again."""
    settings = load_section(RetentionSettings)
    with connect(database_url(), autocommit=True) as conn:
        outcomes = run(conn, settings, SystemClock().now(), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for outcome in outcomes:
        out(describe(outcome, verb))


def describe(outcome: Outcome, verb: str) -> str:
    """`table: <verb> N rows before <cutoff>[ (K partitions: first..last)]`."""
    line = f"{outcome.table}: {verb} {outcome.rows} rows before {outcome.cutoff.isoformat()}"
    names = outcome.partitions
    if names:
        line += f" ({len(names)} partitions: {names[0]}..{names[-1]})"
    return line
