"""The usage event: validation at the ingest boundary and the Kafka codec.

Validation is hand-written rather than a pydantic model per event: it must report every bad
field of every event at once, and ingest's columnar hot path (ingest/columns.py) must accept
exactly what it accepts.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import compress
from operator import attrgetter
from typing import Any, NamedTuple

import orjson

from meterline.errors import FieldError
from meterline.values import MAX_VALUE, to_decimal, value_problem

SCHEMA_VERSION = 1
MAX_ID_LEN = 128
MAX_PROPERTIES = 32
DEFAULT_LATENESS_MS = 35 * 86_400_000
MAX_FUTURE_MS = 5 * 60_000
RESERVATION_PROPERTY = "meterline_reservation"
"""The property that marks an event an entitlement consume published under a reservation: only
the entitlements service sets it (ingest refuses it), and the aggregator removes the reservation
when it counts the event."""
EVENT_FIELDS = frozenset({"id", "customer", "meter", "value", "timestamp", "properties"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Unicode categories an id, customer or meter may not hold: controls (C0, DEL and C1, so every
line break: LF, CR, VT, FF, NEL), format characters (invisible: zero-width spaces and joiners,
bidirectional overrides, the BOM, the soft hyphen), surrogates (unpaired ones; JSON decoders
refuse them, other callers may not) and the line and paragraph separators U+2028 and U+2029.
Other spaces (U+00A0, U+3000), private-use and unassigned code points are kept: they are
visible or harmless, and refusing unassigned ones would tie the rule to a Unicode version."""
_D2 = "[0-9][0-9]"  # spelt out: faster in `re` than [0-9]{2}
RFC3339_DATE_TIME = (
    f"{_D2}{_D2}-{_D2}-{_D2}[Tt]{_D2}:{_D2}:{_D2}"
    + r"(?:\.[0-9]{1,9})?"
    + f"(?:[Zz]|[+-]{_D2}:{_D2})"
)
"""RFC 3339's `date-time` (section 5.6; `T` and `Z` in either case), with at most nine digits
of a second's fraction. `datetime.fromisoformat` alone takes far more of ISO 8601 (week and
ordinal dates, basic format, offsets without minutes or with seconds, a comma before the
fraction); no leap second (`:60`) either, which `datetime` cannot hold."""
_RFC3339 = re.compile(RFC3339_DATE_TIME)


@dataclass(frozen=True, slots=True, init=False)
class UsageEvent:
    """One normalized usage event. Times are epoch milliseconds, UTC. `value` is the double
    that carries a value under the rule of `meterline.values` exactly (its shortest text is the
    decimal sent); arithmetic on values goes through that module, never on the doubles."""

    tenant_id: int
    id: str
    customer: str
    meter: str
    value: float
    timestamp_ms: int
    received_ms: int
    properties: dict[str, Any] | None = None

    def __init__(
        self,
        tenant_id: int,
        id: str,
        customer: str,
        meter: str,
        value: float,
        timestamp_ms: int,
        received_ms: int,
        properties: dict[str, Any] | None = None,
    ) -> None:
        # The generated frozen __init__ pays object.__setattr__ per field (half the cost of
        # validating an event); the slots' own setters do the same work directly.
        _SET_TENANT(self, tenant_id)
        _SET_ID(self, id)
        _SET_CUSTOMER(self, customer)
        _SET_METER(self, meter)
        _SET_VALUE(self, value)
        _SET_TIMESTAMP(self, timestamp_ms)
        _SET_RECEIVED(self, received_ms)
        _SET_PROPERTIES(self, properties)

    @property
    def key(self) -> bytes:
        """The Kafka key: one customer's events stay in order on one partition."""
        return f"{self.tenant_id}/{self.customer}".encode()


(
    _SET_TENANT,
    _SET_ID,
    _SET_CUSTOMER,
    _SET_METER,
    _SET_VALUE,
    _SET_TIMESTAMP,
    _SET_RECEIVED,
    _SET_PROPERTIES,
) = (vars(UsageEvent)[name].__set__ for name in UsageEvent.__slots__)


class Rules(NamedTuple):
    """What a tenant's events are checked against, fixed for one request. (A named tuple:
    built once per request, it costs half what a frozen dataclass does.)"""

    now_ms: int
    meters: Container[str]
    lateness_ms: int = DEFAULT_LATENESS_MS
    future_ms: int = MAX_FUTURE_MS


class PoisonMessage(ValueError):
    """A Kafka message that can never be processed; `reason` says why (for the DLQ)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def validate_event(
    raw: object, tenant_id: int, rules: Rules, index: int | None = None
) -> UsageEvent | list[FieldError]:
    """Return the normalized event, or every problem with it (each naming its field).

    Rule by rule, field by field. Ingest's hot path checks a whole batch at once
    (ingest/columns.py) and comes here only when that batch has a problem to name.
    """
    if not isinstance(raw, dict):
        return [FieldError("", "an event must be a JSON object", index)]
    errors: list[FieldError] = []
    if not raw.keys() <= EVENT_FIELDS:
        errors += [FieldError(str(k), "unknown field", index) for k in raw if k not in EVENT_FIELDS]

    def bad(field: str, message: str) -> None:
        errors.append(FieldError(field, message, index))

    event_id = _text(raw.get("id"), "id", bad)
    customer = _text(raw.get("customer"), "customer", bad)
    meter = _meter(raw.get("meter"), rules, bad)
    value = _value(raw.get("value", 1), bad)
    ts = _timestamp(raw.get("timestamp"), rules, bad)
    props = _properties(raw.get("properties"), bad)
    if errors:
        return errors
    assert event_id is not None and customer is not None and meter is not None
    assert value is not None and ts is not None
    return UsageEvent(tenant_id, event_id, customer, meter, value, ts, rules.now_ms, props)


def _text(v: object, field: str, bad: Any) -> str | None:
    if not isinstance(v, str):
        bad(field, "required, a string" if v is None else "must be a string")
    elif not 1 <= len(v) <= MAX_ID_LEN:
        bad(field, f"must be 1 to {MAX_ID_LEN} characters")
    elif (refused := refused_character(v)) is not None:
        bad(field, refused)
    else:
        return v
    return None


def refused_character(text: str) -> str | None:
    """Why `text` may not be an id, customer or meter (its first character of a
    `REFUSED_CATEGORIES` category), or None. Printable text holds none, and `str.isprintable`
    (in C) settles the common case; the categories are looked up only for the rest."""
    if text.isprintable():
        return None
    for c in text:
        category = unicodedata.category(c)
        if category in REFUSED_CATEGORIES:
            return (
                f"must not contain U+{ord(c):04X} (category {category}: control, format, "
                "surrogate, line or paragraph separator characters are refused)"
            )
    return None


def _meter(v: object, rules: Rules, bad: Any) -> str | None:
    if not isinstance(v, str) or not v:
        bad("meter", "required, a string")
    elif (refused := refused_character(v)) is not None:
        bad("meter", refused)
    elif v not in rules.meters:
        bad("meter", f"unknown meter {v[:64]!r}: not in this tenant's catalog")
    else:
        return v
    return None


def _value(v: object, bad: Any) -> float | None:
    """The value under the rule of `meterline.values`, as the double that carries it exactly."""
    problem = value_problem(v)
    if problem is not None:
        bad("value", problem)
        return None
    return float(to_decimal(v)) or 0.0  # type: ignore[arg-type]  # -0.0 is normalized to 0.0


def _timestamp(v: object, rules: Rules, bad: Any) -> int | None:
    if v is None:
        return rules.now_ms
    ms = parse_timestamp(v)
    if ms is None:
        bad(
            "timestamp",
            "must be an RFC 3339 date-time (2026-11-21T10:15:00Z, 2026-11-21T11:15:00.5+01:00)"
            " or epoch milliseconds",
        )
    elif ms < rules.now_ms - rules.lateness_ms:
        bad("timestamp", f"older than the lateness window ({rules.lateness_ms // 86_400_000} days)")
    elif ms > rules.now_ms + rules.future_ms:
        bad("timestamp", "more than 5 minutes in the future")
    else:
        return ms
    return None


def parse_timestamp(v: object) -> int | None:
    """Epoch milliseconds from an RFC 3339 `date-time` string (`RFC3339_DATE_TIME`) or an
    integer; else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if 0 <= v < 10**14 else None
    if not isinstance(v, str) or _RFC3339.fullmatch(v) is None:
        return None
    return rfc3339_ms(v)


def rfc3339_ms(v: str) -> int | None:
    """Epoch milliseconds of a string already matched by `RFC3339_DATE_TIME`, or None for a
    date or time that does not exist (February 30th, hour 24, a leap second)."""
    try:
        when = datetime.fromisoformat(v[:-1] + "Z" if v[-1] == "z" else v)
    except ValueError:
        return None
    return int(when.timestamp() * 1000)


def _properties(v: object, bad: Any) -> dict[str, Any] | None:
    if v is None:
        return None
    if not isinstance(v, dict):
        bad("properties", "must be an object")
    elif len(v) > MAX_PROPERTIES:
        bad("properties", f"at most {MAX_PROPERTIES} keys")
    elif (problem := _unencodable(v)) is not None:
        bad("properties", problem)
    else:
        return v or None
    return None


INT64 = range(-(2**63), 2**63)
"""The integers a property may hold: JSON decoders read larger ones exactly (msgspec) or turn
them into floats (orjson, past 64 bits), and a consumer in another language may do either."""


def _unencodable(properties: dict[str, Any]) -> str | None:
    """Why `properties` cannot go to Kafka as they are, or None: an integer outside `INT64`, or
    nesting deeper than orjson writes where `encode_event` puts them, one level inside the event
    (it reads JSON nested 1,024 levels deep but writes at most 254). One orjson call settles the
    common case: it refuses integers past 53 bits, and only then are the values looked at."""
    try:
        orjson.dumps({"properties": properties}, option=orjson.OPT_STRICT_INTEGER)
    except TypeError:
        pass
    else:
        return None
    path = _outside_int64(properties)
    if path is not None:
        return f"{path} is an integer outside the signed 64-bit range"
    try:
        orjson.dumps({"properties": properties})
    except TypeError:
        return "nested too deeply to encode"
    return None


def _outside_int64(properties: dict[str, Any]) -> str | None:
    """The path (`properties.a.0`) of the first integer outside `INT64`, or None."""
    stack: list[tuple[str, object]] = [("properties", properties)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{path}.{k}", v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}", v) for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, int) and value not in INT64:
            return path
    return None


def encode_event(e: UsageEvent) -> bytes:
    """The Kafka value: the normalized event plus ingest metadata, orjson-encoded."""
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "tenant": e.tenant_id,
        "id": e.id,
        "customer": e.customer,
        "meter": e.meter,
        "value": e.value,
        "timestamp": e.timestamp_ms,
        "received_at": e.received_ms,
    }
    if e.properties:
        doc["properties"] = e.properties
    return orjson.dumps(doc)


_ID, _KEY = attrgetter("id"), attrgetter("key")


@dataclass(slots=True)
class EncodedEvents:
    """Events ready for Kafka, as parallel lists (entry i of each belongs to event i): their
    ids (for dedupe), Kafka keys and Kafka values (`encode_event`'s bytes). Ingest's hot path
    writes them straight from a request's JSON (ingest/columns.py), without an object per event.
    """

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


def decode_event(data: bytes | None) -> UsageEvent:
    """Inverse of `encode_event`. Raises PoisonMessage for anything that is not a valid event."""
    if data is None:
        raise PoisonMessage("empty message")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PoisonMessage("not a JSON object")
    if doc.get("schema") != SCHEMA_VERSION:
        raise PoisonMessage(f"unsupported schema version {doc.get('schema')!r}")
    try:
        return _from_doc(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise PoisonMessage(f"schema violation: {exc!r}") from None


def _from_doc(doc: dict[str, Any]) -> UsageEvent:
    strings = (doc["id"], doc["customer"], doc["meter"])
    if not all(isinstance(s, str) and 1 <= len(s) <= MAX_ID_LEN for s in strings):
        raise ValueError("id, customer and meter must be 1-128 character strings")
    if any(_CONTROL.search(s) for s in strings):
        raise ValueError("id, customer and meter must not contain control characters")
    value, ts, received, tenant = doc["value"], doc["timestamp"], doc["received_at"], doc["tenant"]
    if not (isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= MAX_VALUE):
        raise ValueError(f"bad value {value!r}")
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (ts, received, tenant)):
        raise ValueError("tenant, timestamp and received_at must be integers")
    props = doc.get("properties")
    if props is not None and not isinstance(props, dict):
        raise ValueError("properties must be an object")
    return UsageEvent(tenant, strings[0], strings[1], strings[2], float(value), ts, received, props)
