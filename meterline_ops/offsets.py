"""`meterline offsets list|reset`: the aggregator's stored positions, and how an operator moves
one after the aggregator stopped a partition (its `/readyz` says which and why)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from meterline.errors import FieldError, ValidationFailed
from meterline.kafka.admin import TopicIncarnation, log_bounds
from meterline.postgres.offsets import set_position, stored_positions
from meterline.settings import KafkaSettings, load_section
from meterline_ops.common import database, friendly, out

GROUP = typer.Option(
    "meterline-aggregator", envvar="METERLINE_AGGREGATOR_GROUP_ID", help="Consumer group."
)


def register(app: typer.Typer) -> None:
    offsets = typer.Typer(no_args_is_help=True, help="The aggregator's stored positions.")
    offsets.command("list")(offsets_list)
    offsets.command("reset")(offsets_reset)
    app.add_typer(offsets, name="offsets")


@friendly
def offsets_list(group: str = GROUP) -> None:
    """Each partition's stored position beside its log's bounds and incarnation."""
    kafka = load_section(KafkaSettings)
    current = TopicIncarnation(kafka.bootstrap, kafka.topic)()
    table = Table("partition", "stored", "log start", "log end", "incarnation")
    with database() as pool:
        rows = stored_positions(pool, group, kafka.topic)
    for row in rows:
        low, high = log_bounds(kafka.bootstrap, kafka.topic, row.partition)
        same = "current" if row.incarnation == current else f"other ({row.incarnation})"
        table.add_row(str(row.partition), str(row.next_offset), str(low), str(high), same)
    Console().print(table)


@friendly
def offsets_reset(
    partition: int = typer.Option(..., help="The partition to move."),
    to: str = typer.Option(..., help="earliest, latest, or an offset within the log."),
    group: str = GROUP,
) -> None:
    """Move a partition's stored position in the topic's current incarnation. Moving back is
    safe (the ledger absorbs what it already counted); moving forward skips events for good."""
    kafka = load_section(KafkaSettings)
    low, high = log_bounds(kafka.bootstrap, kafka.topic, partition)
    offset = _target(to, low, high)
    incarnation = TopicIncarnation(kafka.bootstrap, kafka.topic)()
    with database() as pool:
        set_position(pool, group, kafka.topic, partition, offset, incarnation)
    out(f"partition {partition} of {kafka.topic}: next offset {offset} ({incarnation})")


def _target(to: str, low: int, high: int) -> int:
    """The offset `to` names; a ValidationFailed naming `--to` unless it is within the log."""
    named = {"earliest": low, "latest": high}
    if to in named:
        return named[to]
    if to.isdigit() and low <= int(to) <= high:
        return int(to)
    message = f"must be earliest, latest or an offset from {low} to {high}"
    raise ValidationFailed([FieldError("--to", message)])
