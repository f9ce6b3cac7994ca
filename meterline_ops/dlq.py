"""`meterline dlq list|replay`: the dead-letter topic."""

from __future__ import annotations

from typing import Any

import orjson
import typer

from meterline.kafka.dlq import DeadLetterPublisher, read_dead_letters
from meterline.settings import KafkaSettings, load_section
from meterline_ops.common import friendly, out


def register(app: typer.Typer) -> None:
    dlq = typer.Typer(no_args_is_help=True, help="The dead-letter topic.")
    dlq.command("list")(dlq_list)
    dlq.command("replay")(dlq_replay)
    app.add_typer(dlq, name="dlq")


@friendly
def dlq_list(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Every message in the dead-letter topic, with the reason it is there."""
    kafka = load_section(KafkaSettings)
    for letter in read_dead_letters(kafka.bootstrap, kafka.dlq_topic):
        doc: dict[str, Any] = {
            "partition": letter.partition,
            "offset": letter.offset,
            "reason": letter.reason,
            "source": f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}",
            "value": (letter.value or b"").decode(errors="replace")[:500],
        }
        out(
            orjson.dumps(doc).decode()
            if as_json
            else f"{doc['partition']}@{doc['offset']} {doc['source']}: {doc['reason']}"
        )


@friendly
def dlq_replay(
    partition: int | None = typer.Option(None, help="Only letters of this DLQ partition..."),
    offset: int | None = typer.Option(None, help="...at this offset."),
) -> None:
    """Send dead letters back to the usage topic (after the cause is fixed). Events already
    counted are dropped as duplicates by the ledger; letters still bad come back here."""
    kafka = load_section(KafkaSettings)
    letters = [
        x
        for x in read_dead_letters(kafka.bootstrap, kafka.dlq_topic)
        if (partition is None or x.partition == partition)
        and (offset is None or x.offset == offset)
    ]
    publisher = DeadLetterPublisher(kafka.bootstrap, kafka.dlq_topic)
    publisher.republish(kafka.topic, letters)
    publisher.close()
    out(f"replayed {len(letters)} message(s) to {kafka.topic}")
