"""`meterline dev up`: the whole pipeline on this machine, with or without the demo."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from meterline.settings import stack_home
from meterline_devstack.stack import DevStack, run_until_signal
from meterline_ops.common import friendly, out

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
    stack = DevStack(home or stack_home())
    os.environ["METERLINE_HOME"] = str(stack.home.resolve())
    run_until_signal(stack, _announce_then_demo if demo else _announce)


def _announce(stack: DevStack) -> None:
    out("Meterline is running:")
    for name, url in stack.urls.items():
        out(f"  {name:<13} {url}")
    out(f"stack file: {stack.home / 'stack.json'}   (Ctrl-C stops everything)")


def _announce_then_demo(stack: DevStack) -> None:
    from meterline_devstack.demo import run_demo

    _announce(stack)
    run_demo(stack)
