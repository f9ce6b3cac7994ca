"""Kafka values decoded into events as columns (`Events`: one list per field), a run at once.

The aggregator's hot path never builds an object per event. `decode_columns` parses every value
of a run and checks the whole run a column per field of the message's definition
(`meterline.events.wire.WIRE`), by the field's kind, with one builtin call per rule and column
(the set of types in a column, its shortest and longest string, its smallest and largest value),
so the checks run in C rather than in a Python loop per event. It accepts only what
`meterline.events.decode_event` accepts (in the shape ingest writes: exact JSON types); for
anything else it returns `None` and the caller decodes that run message by message with
`decode_event`, which also names each poison message's reason. tests/contract/test_event_wire.py
holds the two equal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import itemgetter
from typing import Any

import orjson

from meterline.events import MAX_ID_LEN, SCHEMA_VERSION, UsageEvent
from meterline.events.wire import OPTIONAL, WIRE, WRITTEN_ALWAYS, Kind
from meterline.values import MAX_VALUE
from meterline.view.model import DAY_MS

EventKey = tuple[int, str]  # (tenant_id, event id): an event's identity, whatever its time

# The same characters `decode_event` refuses in text fields.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NONE = type(None)


@dataclass(slots=True)
class Events:
    """Events as parallel lists, in order: entry i of every list belongs to event i."""

    tenant: list[int] = field(default_factory=list)
    id: list[str] = field(default_factory=list)
    customer: list[str] = field(default_factory=list)
    meter: list[str] = field(default_factory=list)
    value: list[float] = field(default_factory=list)  # exact decimals as doubles: to_deltas
    ts_ms: list[int] = field(default_factory=list)
    received_ms: list[int] = field(default_factory=list)
    properties: list[dict[str, Any] | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.id)

    @classmethod
    def of(cls, events: Iterable[UsageEvent]) -> Events:
        out = cls()
        for e in events:
            out.append(e)
        return out

    def append(self, e: UsageEvent) -> None:
        self.tenant.append(e.tenant_id)
        self.id.append(e.id)
        self.customer.append(e.customer)
        self.meter.append(e.meter)
        self.value.append(e.value)
        self.ts_ms.append(e.timestamp_ms)
        self.received_ms.append(e.received_ms)
        self.properties.append(e.properties)

    def rows(self) -> list[UsageEvent]:
        """The events as objects (for tests and the rare slow path; never per batch)."""
        return list(map(UsageEvent, *self._columns()))

    def identities(self) -> list[EventKey]:
        """Each event's identity (tenant, id): copies of an event are copies whatever their
        times (a retry may carry a new, server-stamped one)."""
        return list(zip(self.tenant, self.id, strict=True))

    def days(self) -> set[int]:
        """The UTC day indexes of the event times (a batch usually spans one: min and max say)."""
        if not self.ts_ms:
            return set()
        first, last = min(self.ts_ms) // DAY_MS, max(self.ts_ms) // DAY_MS
        return {first} if first == last else {t // DAY_MS for t in self.ts_ms}

    def select(self, keep: Iterable[object]) -> Events:
        """The events whose entry in `keep` is true, in order."""
        mask = list(keep)
        return Events(*(list(compress(col, mask)) for col in self._columns()))

    def _columns(self) -> tuple[list[Any], ...]:
        return (
            self.tenant,
            self.id,
            self.customer,
            self.meter,
            self.value,
            self.ts_ms,
            self.received_ms,
            self.properties,
        )


COLUMN = {
    "tenant": "tenant",
    "id": "id",
    "customer": "customer",
    "meter": "meter",
    "value": "value",
    "timestamp": "ts_ms",
    "received_at": "received_ms",
    "properties": "properties",
}
"""The `Events` column of each field of the message (the schema version has none)."""
_REQUIRED = tuple((f, itemgetter(f.name)) for f in WRITTEN_ALWAYS)


def decode_columns(values: Sequence[bytes | None]) -> Events | None:
    """The events of `values` (Kafka message values), or `None` when any of them needs
    `decode_event`'s checks one by one (a poison message, an integer value, a missing field)."""
    try:
        docs = list(map(orjson.loads, values))  # type: ignore[arg-type]  # None: TypeError
    except (orjson.JSONDecodeError, TypeError):
        return None
    if not docs or set(map(type, docs)) != {dict}:
        return None
    columns: dict[str, list[Any]] = {}
    try:
        for f, get in _REQUIRED:
            columns[f.name] = list(map(get, docs))
    except KeyError:
        return None
    for f in OPTIONAL:
        columns[f.name] = list(map(dict.get, docs, repeat(f.name)))
    raw = b"".join(values)  # type: ignore[arg-type]  # all bytes: each was decoded
    plain = b"\\" not in raw and b"\x7f" not in raw
    if not all(_COLUMN_OK[f.kind](columns[f.name], plain) for f in WIRE):
        return None
    return Events(**{COLUMN[name]: col for name, col in columns.items() if name in COLUMN})


def _schema(col: list[Any], _plain: bool) -> bool:
    return set(map(type, col)) == {int} and set(col) == {SCHEMA_VERSION}


def _texts(col: list[Any], plain: bool) -> bool:
    """Every entry a str of 1 to MAX_ID_LEN characters without a control character.

    JSON holds a control character in a string only as an escape (raw ones are invalid and
    orjson refuses them), DEL aside. So when no value has a backslash or a DEL byte (`plain`:
    UTF-8 uses bytes below 0x80 for ASCII alone), no decoded string has a control character,
    and one scan of the raw bytes tells; otherwise the strings are checked."""
    if set(map(type, col)) != {str}:
        return False
    lengths = list(map(len, col))
    if min(lengths) < 1 or max(lengths) > MAX_ID_LEN:
        return False
    if plain:
        return True
    joined = "".join(col)
    return joined.isprintable() or _CONTROL.search(joined) is None  # printable: no control


def _integers(col: list[Any], _plain: bool) -> bool:
    """Every entry an int (a JSON integer; `bool` is a type of its own here)."""
    return set(map(type, col)) == {int}


def _amounts(col: list[Any], _plain: bool) -> bool:
    """Every entry a float in [0, MAX_VALUE]. A NaN can hide from min and max, never from sum."""
    return (
        set(map(type, col)) == {float}
        and min(col) >= 0.0
        and max(col) <= MAX_VALUE
        and not math.isnan(sum(col))
    )


def _objects(col: list[Any], _plain: bool) -> bool:
    return set(map(type, col)) <= {_NONE, dict}


_COLUMN_OK: dict[Kind, Callable[[list[Any], bool], bool]] = {
    Kind.SCHEMA: _schema,
    Kind.INTEGER: _integers,
    Kind.TEXT: _texts,
    Kind.VALUE: _amounts,
    Kind.OBJECT: _objects,
}
"""Whether every entry of a column is of the kind (`decode_event` would take each), by the
kind of the message's field: a column that may not be is left to `decode_event`."""
