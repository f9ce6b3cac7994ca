"""`meterline`: operate the stack. Each command group lives in its own module."""

from __future__ import annotations

import typer

from meterline_ops import (
    admin,
    billing,
    catalog,
    dev,
    dlq,
    offsets,
    retention,
    revenue,
    serve,
    usage,
    view,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Meterline usage metering.")
app.add_typer(dev.app, name="dev")
for module in (admin, serve, catalog, usage, view, dlq, billing, offsets, retention, revenue):
    module.register(app)


if __name__ == "__main__":
    app()
