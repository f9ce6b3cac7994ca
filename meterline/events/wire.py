"""The Kafka message of a usage event: its one definition (`WIRE`) and the codec built from it.

A message's value is a JSON object, its fields in `WIRE`'s order, written by orjson's rules
(no spaces, a double's shortest text): `{"schema":1,"tenant":7,"id":"e1","customer":"c1",
"meter":"api_calls","value":3.0,"timestamp":1764000000000,"received_at":1764000000123,
"properties":{"model":"small"}}`, `properties` left out when empty. Its key is
`tenant/customer` (`UsageEvent.key`): one customer's events stay in order on one partition.

Everything that writes or reads the message is built from `WIRE`:
- `encode_events` writes a whole batch's values from one layout generated from it
  (`VALUE_LAYOUT`), ingest's hot path; `encode_event` is the same for one event;
- `decode_event` checks each field by its kind (`KIND_PROBLEMS`) and names a poison message's
  reason; the aggregator's columnar decoder (aggregator/decoding.py) checks a whole run of
  messages a column per field, by the same kinds.
tests/contract/test_event_wire.py holds both fast paths to this definition: the encoder byte for
byte against orjson writing the document field by field, the columnar decoder against
`decode_event`, on valid and broken messages alike (Hypothesis).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter
from typing import Any

import orjson

from meterline.events.model import (
    MAX_ID_LEN,
    SCHEMA_VERSION,
    PoisonMessage,
    UsageEvent,
    ValidEvents,
)
from meterline.values import MAX_VALUE


class Kind(enum.Enum):
    """What a field of the message holds."""

    SCHEMA = "the schema version, `SCHEMA_VERSION`"
    INTEGER = "a JSON integer"
    TEXT = f"a string of 1 to {MAX_ID_LEN} characters without a control character"
    VALUE = f"a number from 0 to {MAX_VALUE}, written as a double"
    OBJECT = "a JSON object, or absent (left out when empty)"


@dataclass(frozen=True, slots=True)
class WireField:
    name: str
    """Its key in the message."""
    kind: Kind
    attribute: str
    """The `UsageEvent` attribute it carries ("" for the schema version)."""
    per_batch: bool = False
    """One value for every event a request produces (the schema, the tenant of the API key,
    the receive time): the encoder writes it into the format once per batch."""


WIRE: tuple[WireField, ...] = (
    WireField("schema", Kind.SCHEMA, "", per_batch=True),
    WireField("tenant", Kind.INTEGER, "tenant_id", per_batch=True),
    WireField("id", Kind.TEXT, "id"),
    WireField("customer", Kind.TEXT, "customer"),
    WireField("meter", Kind.TEXT, "meter"),
    WireField("value", Kind.VALUE, "value"),
    WireField("timestamp", Kind.INTEGER, "timestamp_ms"),
    WireField("received_at", Kind.INTEGER, "received_ms", per_batch=True),
    WireField("properties", Kind.OBJECT, "properties"),
)
"""The message's fields, in the order they are written. An `OBJECT` field may only come last
(the encoder writes it, or nothing, after the others)."""
WRITTEN_ALWAYS = tuple(f for f in WIRE if f.kind is not Kind.OBJECT)
PER_EVENT = tuple(f for f in WRITTEN_ALWAYS if not f.per_batch)
PER_BATCH = tuple(f for f in WRITTEN_ALWAYS if f.per_batch)
OPTIONAL = tuple(f for f in WIRE if f.kind is Kind.OBJECT)
assert WIRE[len(WRITTEN_ALWAYS) :] == OPTIONAL, "optional fields come last"

_PER_BATCH_HOLDER = "%d"
SLOT = "\0"
"""Where a per-event field goes in `VALUE_LAYOUT` (no JSON text written compact holds it)."""


def _value_layout() -> str:
    """One message's text, generated from `WIRE`, cut at each per-event field (`SLOT`, between
    quotes for text, already escaped); per-batch fields take `%d`, filled once a batch. The last
    slot takes the optional fields, `,"properties":{...}` or nothing."""
    parts = []
    for f in WRITTEN_ALWAYS:
        slot = f'"{SLOT}"' if f.kind is Kind.TEXT else SLOT
        parts.append(f'"{f.name}":' + (_PER_BATCH_HOLDER if f.per_batch else slot))
    return "{" + ",".join(parts) + SLOT + "}"


VALUE_LAYOUT = _value_layout()


def encode_events(events: ValidEvents, tenant_id: int, received_ms: int) -> EncodedEvents:
    """The Kafka keys and values of a batch, each value byte for byte what orjson writes for
    the document of `WIRE` (the whole batch's texts joined at once, cut into values at line
    ends; each distinct text, value and the properties written by orjson once); one event
    alone, as orjson writes its document."""
    constants = {"schema": SCHEMA_VERSION, "tenant": tenant_id, "received_at": received_ms}
    n = len(events)
    if n == 1:
        return _one(events, constants)
    per_event: dict[str, list[str]] = {
        "id": _written(events.id),
        "customer": _written(events.customer),
        "meter": _written(events.meter, always=True),
        "value": _numbers(events.value),
        "timestamp": _integers(events.timestamp_ms),
    }
    columns = [per_event[f.name] for f in PER_EVENT]
    columns.append(_optional(events.properties, n))
    literals = (VALUE_LAYOUT % tuple(constants[f.name] for f in PER_BATCH)).split(SLOT)
    literals[-1] += "\n"
    pieces = _interleaved(literals, columns, n)
    values = _lines("".join(pieces), n + 1)
    assert values is not None, "a message holds no line break: orjson escapes them"
    del values[n]
    prefix = f"{tenant_id}/"
    keys = _lines(prefix + ("\n" + prefix).join(events.customer), n)
    if keys is None:  # a customer with a line break (the rules refuse them)
        keys = list(map(str.encode, map(prefix.__add__, events.customer)))
    return EncodedEvents(events.id, keys, values)


def _interleaved(literals: list[str], columns: list[list[str]], n: int) -> list[str]:
    """The texts of `n` messages in order: each literal, then the event's field of the column
    of its slot."""
    width = len(literals) + len(columns)
    pieces: list[str] = [""] * (n * width)
    for at, literal in enumerate(literals):
        pieces[2 * at :: width] = [literal] * n
    for at, column in enumerate(columns):
        pieces[2 * at + 1 :: width] = column
    return pieces


def _lines(text: str, n: int) -> list[bytes] | None:
    """`text` encoded and cut at its line ends, when that makes `n` parts; else None."""
    lines = text.encode().split(b"\n")
    return lines if len(lines) == n else None


def _one(events: ValidEvents, constants: dict[str, int]) -> EncodedEvents:
    """A batch of one: its document, the fields of `WIRE` in order, written by orjson."""
    doc = _DOCUMENT.copy()  # the keys in `WIRE`'s order: setting them keeps it
    doc.update(constants)
    doc["id"], doc["customer"], doc["meter"] = events.id[0], events.customer[0], events.meter[0]
    doc["value"], doc["timestamp"] = events.value[0], events.timestamp_ms[0]
    if events.properties[0]:
        doc[OPTIONAL[0].name] = events.properties[0]
    key = f"{constants['tenant']}/{events.customer[0]}".encode()
    return EncodedEvents(events.id, [key], [orjson.dumps(doc)])


_DOCUMENT: dict[str, Any] = dict.fromkeys(f.name for f in WRITTEN_ALWAYS)


def encode_event(e: UsageEvent) -> bytes:
    """The Kafka value of one event (`encode_events` for a batch of one)."""
    one = ValidEvents([e.id], [e.customer], [e.meter], [e.value], [e.timestamp_ms], [e.properties])
    return encode_events(one, e.tenant_id, e.received_ms).values[0]


def _written(texts: list[str], always: bool = False) -> list[str]:
    """Each text as orjson writes it between a JSON string's quotes. Valid text holds no
    control character (the rules refuse them), so only a quote or a backslash is escaped:
    text without either (nor a line break, where `encode_events` cuts) is written as it is;
    any other goes through orjson (distinct ones once). `always`: through orjson whatever it
    holds (a column of few distinct texts)."""
    if not always:
        joined = "".join(texts)
        if '"' not in joined and "\\" not in joined and "\n" not in joined:
            return texts
    inner = {t: orjson.dumps(t).decode()[1:-1] for t in set(texts)}
    return list(map(inner.__getitem__, texts))


def _integers(integers: list[int]) -> list[str]:
    """Each integer as orjson writes it (distinct ones once)."""
    shown = {v: str(v) for v in set(integers)}
    return list(map(shown.__getitem__, integers))


def _numbers(values: list[float]) -> list[str]:
    """Each value as orjson writes it (distinct ones once)."""
    if len(values) == 1:
        return [orjson.dumps(values[0]).decode()]
    shown = {v: orjson.dumps(v).decode() for v in set(values)}
    return list(map(shown.__getitem__, values))


def _optional(properties: list[dict[str, Any] | None], n: int) -> list[str]:
    """What follows the fields always written: `,"properties":{...}` where there are any (the
    rules took them only if orjson writes them one level deeper, inside the message)."""
    if not any(properties):
        return [""] * n
    name = f',"{OPTIONAL[0].name}":'
    if all(properties):
        return list(map(name.__add__, map(bytes.decode, map(orjson.dumps, properties))))
    return [name + orjson.dumps(p).decode() if p else "" for p in properties]


_ID, _KEY = attrgetter("id"), attrgetter("key")


@dataclass(slots=True)
class EncodedEvents:
    """Events ready for Kafka, as parallel lists (entry i of each belongs to event i): their
    ids (for dedupe), Kafka keys and Kafka values."""

    ids: list[str]
    keys: list[bytes]
    values: list[bytes]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of(cls, events: Iterable[UsageEvent]) -> EncodedEvents:
        rows = events if isinstance(events, list) else list(events)
        return cls(list(map(_ID, rows)), list(map(_KEY, rows)), list(map(encode_event, rows)))

    def select(self, keep: Sequence[object]) -> EncodedEvents:
        """The events whose entry in `keep` is true, in order."""
        return EncodedEvents(
            list(compress(self.ids, keep)),
            list(compress(self.keys, keep)),
            list(compress(self.values, keep)),
        )

    def events(self) -> list[UsageEvent]:
        """The events decoded (for tests and the in-memory sink; never on the hot path)."""
        return list(map(decode_event, self.values))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text_problem(v: object) -> str | None:
    if not isinstance(v, str) or not 1 <= len(v) <= MAX_ID_LEN:
        return f"must be a string of 1 to {MAX_ID_LEN} characters"
    return "must not contain control characters" if _CONTROL.search(v) else None


def _integer_problem(v: object) -> str | None:
    return None if v.__class__ is int else "must be an integer"


def _value_problem(v: object) -> str | None:
    if isinstance(v, int | float) and v.__class__ is not bool and 0 <= v <= MAX_VALUE:
        return None
    return f"must be a finite number from 0 to {MAX_VALUE}"


def _object_problem(v: object) -> str | None:
    return None if v is None or v.__class__ is dict else "must be an object"


def _schema_problem(v: object) -> str | None:
    return None if v == SCHEMA_VERSION and v.__class__ is int else "unsupported schema version"


KIND_PROBLEMS: dict[Kind, Callable[[object], str | None]] = {
    Kind.SCHEMA: _schema_problem,
    Kind.INTEGER: _integer_problem,
    Kind.TEXT: _text_problem,
    Kind.VALUE: _value_problem,
    Kind.OBJECT: _object_problem,
}
"""Why a field's value is not of its kind, or None: what `decode_event` checks."""


def decode_event(data: bytes | None) -> UsageEvent:
    """The event of a Kafka value, checked field by field against `WIRE`; PoisonMessage,
    naming the reason, for anything that is not a valid event."""
    if data is None:
        raise PoisonMessage("empty message")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PoisonMessage("not a JSON object")
    attributes: list[Any] = []
    for name, kind, problem_of in _DECODING:
        value = doc.get(name)
        problem = problem_of(value)
        if problem is not None:
            if kind is Kind.SCHEMA:
                raise PoisonMessage(f"unsupported schema version {value!r}")
            raise PoisonMessage(f"schema violation: {name} {problem}, not {value!r:.80}")
        if kind is not Kind.SCHEMA:
            attributes.append(float(value) if kind is Kind.VALUE else value)  # type: ignore[arg-type]
    return UsageEvent(*attributes)


_DECODING = tuple((f.name, f.kind, KIND_PROBLEMS[f.kind]) for f in WIRE)
assert tuple(f.attribute for f in WIRE if f.attribute) == UsageEvent.__slots__, (
    "the fields carry the event's attributes in its own order"
)
