"""Operations: the `meterline` command line (typer); it may import the services."""
