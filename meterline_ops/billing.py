"""`meterline report run` and `meterline reconcile run [--date D]` (the reporter's jobs).

The commands run the reporter's one-shot jobs (`reporter.jobs`, also `python -m reporter.jobs`).
"""

from __future__ import annotations

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
    from reporter import jobs  # the reporter's world loads only for these two commands

    try:
        code = jobs.main(args)
    except SystemExit as exc:  # argparse's answer to bad arguments
        code = int(exc.code or 0)
    raise typer.Exit(code)
