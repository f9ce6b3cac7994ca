"""What every command shares: settings, clear one-line errors, and repositories."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

import typer

from meterline.catalog.model import Aggregation
from meterline.catalog.repository import PostgresCatalogRepository
from meterline.errors import MeterlineError
from meterline.postgres import Pool, open_pool
from meterline.settings import DatabaseSettings, Settings, load_section, load_settings

P = ParamSpec("P")
R = TypeVar("R")


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn domain errors into one clear line on stderr and exit code 1 (2 for bad input)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except MeterlineError as exc:
            typer.echo(f"error: {_describe(exc)}", err=True)
            raise typer.Exit(2 if 400 <= exc.status < 500 else 1) from None

    return wrapper


def _describe(exc: MeterlineError) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        return "; ".join(f"{e.field}: {e.message}" for e in errors)
    return exc.message


def settings() -> Settings:
    return load_settings()


def database_url() -> str:
    return load_section(DatabaseSettings).url


@contextmanager
def database() -> Iterator[Pool]:
    pool = open_pool(database_url(), max_size=2)
    try:
        yield pool
    finally:
        pool.close()


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


def aggregations_of(pool: Pool) -> Callable[[int, str], Aggregation]:
    """Each meter's aggregation by (tenant, meter), read once per tenant (sum if unknown)."""
    repo = PostgresCatalogRepository(pool)
    cache: dict[int, dict[str, Aggregation]] = {}

    def aggregation_of(tenant_id: int, meter: str) -> Aggregation:
        if tenant_id not in cache:
            current = repo.current(tenant_id)
            cache[tenant_id] = (
                {} if current is None else {m.key: m.aggregation for m in current[1].meters}
            )
        return cache[tenant_id].get(meter, Aggregation.SUM)

    return aggregation_of
