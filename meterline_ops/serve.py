"""`meterline serve SERVICE` and `meterline stripe-emulator`: run one process in the foreground."""

from __future__ import annotations

import runpy
import sys
from enum import StrEnum

import typer

MODULES = {
    "ingest": "ingest",
    "aggregator": "aggregator",
    "entitlements": "entitlements_api",
    "reporter": "reporter",
}


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
    module = MODULES[service.value]
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def stripe_emulator(ctx: typer.Context) -> None:
    """Run the Stripe emulator (options: `python -m stripe_emulator --help`)."""
    sys.argv = ["stripe-emulator", *ctx.args]
    runpy.run_module("stripe_emulator", run_name="__main__", alter_sys=True)
