"""`meterline report run` and `meterline reconcile run [--date D]` (the reporter's jobs).

The commands run `python -m reporter.jobs` in-process through runpy, like `meterline serve`:
`meterline` never imports a service.
"""

from __future__ import annotations

import runpy
import sys
from datetime import datetime

import typer

report_app = typer.Typer(no_args_is_help=True, help="Push usage to Stripe.")
reconcile_app = typer.Typer(no_args_is_help=True, help="Compare Meterline, the ledger and Stripe.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.add_typer(report_app, name="report")
    app.add_typer(reconcile_app, name="reconcile")


@report_app.command("run")
def report_run() -> None:
    """Push every customer's usage to Stripe now (pending sends first, then new revisions)."""
    _job(["push"])


@reconcile_app.command("run")
def reconcile_run(
    date: str | None = typer.Option(None, "--date", help="UTC day YYYY-MM-DD (default: yesterday)"),
) -> None:
    """Reconcile one UTC day; every discrepancy becomes an alert on /finance."""
    args = ["reconcile"]
    if date is not None:
        try:
            datetime.strptime(date, "%Y-%m-%d")
        except ValueError:
            typer.echo(f"error: --date must be YYYY-MM-DD, got {date!r}", err=True)
            raise typer.Exit(2) from None
        args += ["--date", date]
    _job(args)


def _job(args: list[str]) -> None:
    sys.argv = ["reporter.jobs", *args]
    try:
        runpy.run_module("reporter.jobs", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        raise typer.Exit(int(exc.code or 0)) from None
