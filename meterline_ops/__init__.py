"""The `meterline` command line (typer)."""
