"""`meterline`: operate the stack. Each command group lives in its own module."""

from __future__ import annotations

import typer

from meterline.cli import admin, dev

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Meterline usage metering.")
app.add_typer(dev.app, name="dev")
admin.register(app)


if __name__ == "__main__":
    app()
