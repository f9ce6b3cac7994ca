"""`meterline dev up`: the whole pipeline on this machine, with or without the demo.

The dev stack is a development tool (the `meterline-devstack` distribution in devstack/), not
part of the production install: without it the command says how to install it.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from meterline.settings import stack_home
from meterline_ops.common import friendly
from meterline_ops.serve import NOT_INSTALLED

app = typer.Typer(no_args_is_help=True, help="The embedded development stack.")


@app.command("up")
@friendly
def up(
    demo: bool = typer.Option(
        True, "--demo/--no-demo", help="Apply the demo catalog and send traffic."
    ),
    home: Path = typer.Option(
        None, help="Where data, logs and stack.json go (default .meterline)."
    ),
) -> None:
    """Start Kafka, Postgres, Redis, the Stripe emulator and every service; Ctrl-C stops all."""
    try:
        from meterline_devstack.demo import announce, announce_then_demo
        from meterline_devstack.stack import DevStack, run_until_signal
    except ImportError:
        typer.echo(NOT_INSTALLED.format(what="the dev stack"), err=True)
        raise typer.Exit(2) from None
    stack = DevStack(home or stack_home())
    os.environ["METERLINE_HOME"] = str(stack.home.resolve())
    run_until_signal(stack, announce_then_demo if demo else announce)
