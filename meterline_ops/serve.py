"""`meterline serve SERVICE` and `meterline stripe-emulator`: run one process in the foreground."""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import StrEnum

import typer


class Service(StrEnum):
    ingest = "ingest"
    aggregator = "aggregator"
    entitlements = "entitlements"
    reporter = "reporter"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command(
        "stripe-emulator",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(stripe_emulator)


def serve(service: Service) -> None:
    """Run a service as `python -m <its package>` would (settings from the environment)."""
    sys.argv = [service.value]
    sys.exit(service_main(service)())


def service_main(service: Service) -> Callable[[], int]:
    """The service's `main`, imported only when asked for (each service loads its own world)."""
    if service is Service.ingest:
        from ingest.__main__ import main as ingest_main

        return ingest_main
    if service is Service.aggregator:
        from aggregator.__main__ import main as aggregator_main

        return aggregator_main
    if service is Service.entitlements:
        from entitlements_api.__main__ import main as entitlements_main

        return entitlements_main
    from reporter.__main__ import main as reporter_main

    return reporter_main


def stripe_emulator(ctx: typer.Context) -> None:
    """Run the Stripe emulator, a dev tool (options: `python -m stripe_emulator --help`)."""
    try:
        from stripe_emulator.__main__ import main
    except ImportError:
        typer.echo(NOT_INSTALLED.format(what="the Stripe emulator"), err=True)
        raise typer.Exit(2) from None
    sys.exit(main(ctx.args))


NOT_INSTALLED = (
    "error: {what} is a development tool, not part of the production install: "
    "pip install -e ./devstack (make install does)"
)
