"""The rules of the ingest contract, the one validation of a usage event sent by a client.

`check_events` takes a batch as columns (`SentEvents`) and gives either the events normalized
(`ValidEvents`) or every problem of every event at once, each naming its field. Ingest checks
every body with it, the entitlements consume checks its event with it (`validate_event`, a batch
of one): what one accepts, the other does.

Each field has one rule, written once, value by value (`FIELD_RULES`: it decides and it words
the 422). A batch of several events is first looked at a column at a time, with one builtin
call per rule (the set of types in a column, its longest text, whether its text joined is
printable, its smallest and largest time), which runs in C rather than in a Python loop per
event; only a column that does not pass that look is checked value by value.
The look may refuse what the rule accepts (that value is then checked again by the rule), never
the reverse: tests/unit/test_event_rules.py holds the two to that with Hypothesis.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import repeat
from operator import contains
from typing import Any

import orjson

from meterline.errors import FieldError
from meterline.events.model import (
    EVENT_FIELDS,
    MAX_ID_LEN,
    MAX_PROPERTIES,
    RESERVATION_PROPERTY,
    Rules,
    SentEvents,
    UsageEvent,
    ValidEvents,
)
from meterline.values import MAX_VALUE, fits, to_decimal, value_problem

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
_RFC3339_LINES = re.compile(f"(?:{RFC3339_DATE_TIME}\n)*")
EPOCH_MS_LIMIT = 10**14
"""Epoch milliseconds are taken below this (the year 5138), never negative."""
INT64 = range(-(2**63), 2**63)
"""The integers a property may hold: JSON decoders read larger ones exactly (msgspec) or turn
them into floats (orjson, past 64 bits), and a consumer in another language may do either."""
_STRICT = orjson.OPT_STRICT_INTEGER
_NONE = type(None)
_RESERVED_FIELD = f"properties.{RESERVATION_PROPERTY}"

Problems = list[tuple[int, str, str]]
"""(position in the batch, field, message) of each problem found."""


def validate_event(
    raw: object, tenant_id: int, rules: Rules, index: int | None = None
) -> UsageEvent | list[FieldError]:
    """One event sent alone: normalized, or every problem with it (each naming its field)."""
    sent, errors = sent_events([raw], [index])
    checked = check_events(sent, rules)
    if errors or isinstance(checked, list):
        return errors + (checked if isinstance(checked, list) else [])
    return checked.event(0, tenant_id, rules.now_ms)


def sent_events(
    raws: Sequence[object], index: Sequence[int | None]
) -> tuple[SentEvents, list[FieldError]]:
    """The JSON objects among `raws` as columns, and the problems of their shape: an entry
    that is not an object (left out of the columns) and unknown fields. `index`: each entry's
    position in the request."""
    if set(map(type, raws)) == {dict} and set().union(*raws) <= _KNOWN:  # type: ignore[arg-type]
        return SentEvents.of(raws, index), []  # type: ignore[arg-type]
    errors: list[FieldError] = []
    objects: list[dict[str, Any]] = []
    kept: list[int | None] = []
    for raw, at in zip(raws, index, strict=True):
        if not isinstance(raw, dict):
            errors.append(FieldError("", "an event must be a JSON object", at))
            continue
        errors += [FieldError(str(k), "unknown field", at) for k in raw if k not in _KNOWN]
        objects.append(raw)
        kept.append(at)
    return SentEvents.of(objects, kept), errors


_KNOWN = frozenset(EVENT_FIELDS)


def check_events(sent: SentEvents, rules: Rules) -> ValidEvents | list[FieldError]:
    """The events normalized, or every problem of every event, by position and in the order of
    `EVENT_FIELDS` within an event (each `FieldError` carries the event's `sent.index`)."""
    found: Problems = []
    typed = sent.typed
    checked = ValidEvents(
        _checked(sent.id, "id", rules, found, typed),
        _checked(sent.customer, "customer", rules, found, typed),
        _checked(sent.meter, "meter", rules, found, typed),
        _checked(sent.value, "value", rules, found, typed),
        _checked(sent.timestamp, "timestamp", rules, found, typed),
        _checked(sent.properties, "properties", rules, found, typed),
    )
    _reserved(sent.properties, found)
    if not found:
        return checked
    found.sort(key=_position)
    return [FieldError(field, message, sent.index[at]) for at, field, message in found]


def _position(problem: tuple[int, str, str]) -> int:
    return problem[0]


Check = Callable[[Any, Rules], tuple[Any, str | None]]
"""One field's rule for one value: (the value normalized, None) or (anything, the problem)."""
Look = Callable[[list[Any], Rules, bool], "list[Any] | None"]
"""One field's quick look at a whole column: the column normalized when every value certainly
passes the field's rule, else None (then each value goes through the rule). The flag says the
column's types and bounds were checked as it was decoded (`SentEvents.typed`)."""


def _checked(
    column: list[Any], field: str, rules: Rules, found: Problems, typed: bool = False
) -> list[Any]:
    """`column` normalized by its field's rule (`FIELD_RULES`); its problems appended to
    `found`. A column of several values goes through the field's quick look first (for one,
    the rule costs less)."""
    check, look = FIELD_RULES[field]
    if len(column) > 1:
        normalized = look(column, rules, typed)
        if normalized is not None:
            return normalized
    elif column:
        normal, problem = check(column[0], rules)
        if problem is not None:
            found.append((0, field, problem))
        return [normal]
    out: list[Any] = []
    for at, value in enumerate(column):
        normal, problem = check(value, rules)
        if problem is not None:
            found.append((at, field, problem))
        out.append(normal)
    return out


# The rules, value by value.


def _text(v: object, _rules: Rules) -> tuple[Any, str | None]:
    if not isinstance(v, str):
        return v, "required, a string" if v is None else "must be a string"
    if not 1 <= len(v) <= MAX_ID_LEN:
        return v, f"must be 1 to {MAX_ID_LEN} characters"
    return v, refused_character(v)


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


def _meter(v: object, rules: Rules) -> tuple[Any, str | None]:
    if not isinstance(v, str) or not v:
        return v, "required, a string"
    if (refused := refused_character(v)) is not None:
        return v, refused
    if v not in rules.meters:
        return v, f"unknown meter {v[:64]!r}: not in this tenant's catalog"
    return v, None


def _value(v: object, _rules: Rules) -> tuple[Any, str | None]:
    """The value under the rule of `meterline.values`, as the double that carries it exactly
    (-0.0 as 0.0). A double in range is settled by `fits` (two builtin calls)."""
    if v.__class__ is float and 0.0 <= v <= MAX_VALUE and fits(v):
        return v or 0.0, None
    problem = value_problem(v)
    if problem is not None:
        return v, problem
    return float(to_decimal(v)) or 0.0, None  # type: ignore[arg-type]


def _timestamp(v: object, rules: Rules) -> tuple[Any, str | None]:
    if v is None:
        return rules.now_ms, None
    ms = parse_timestamp(v)
    if ms is None:
        return v, (
            "must be an RFC 3339 date-time (2026-11-21T10:15:00Z, 2026-11-21T11:15:00.5+01:00)"
            " or epoch milliseconds"
        )
    if ms < rules.now_ms - rules.lateness_ms:
        return v, f"older than the lateness window ({rules.lateness_ms // 86_400_000} days)"
    if ms > rules.now_ms + rules.future_ms:
        return v, "more than 5 minutes in the future"
    return ms, None


def parse_timestamp(v: object) -> int | None:
    """Epoch milliseconds from an RFC 3339 `date-time` string (`RFC3339_DATE_TIME`) or an
    integer; else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if 0 <= v < EPOCH_MS_LIMIT else None
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


def _properties(v: object, _rules: Rules) -> tuple[Any, str | None]:
    if v is None:
        return None, None
    if not isinstance(v, dict):
        return v, "must be an object"
    if len(v) > MAX_PROPERTIES:
        return v, f"at most {MAX_PROPERTIES} keys"
    return v or None, _unencodable(v)


def _reserved(column: list[Any], found: Problems) -> None:
    """The reserved property (`RESERVATION_PROPERTY`) in properties a client sent. One
    builtin pass settles the usual batch (no properties hold it)."""
    if not any(column):
        return
    try:
        held = any(map(contains, filter(None, column), repeat(RESERVATION_PROPERTY)))
    except TypeError:  # a number where properties belong: looked at one by one
        held = True
    if held:
        found += [
            (at, _RESERVED_FIELD, "reserved for the events of entitlement consumes")
            for at, v in enumerate(column)
            if isinstance(v, dict) and RESERVATION_PROPERTY in v
        ]


def _unencodable(properties: dict[str, Any]) -> str | None:
    """Why `properties` cannot go to Kafka as they are, or None: an integer outside `INT64`, or
    nesting deeper than orjson writes where the Kafka value puts them, one level inside the
    event (it reads JSON nested 1,024 levels deep but writes at most 254). One orjson call
    settles the common case: it refuses integers past 53 bits, and only then are the values
    looked at."""
    try:
        orjson.dumps({"properties": properties}, option=_STRICT)
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


# The quick looks (`Look`): a whole column at once.


def _texts_look(column: list[Any], _rules: Rules, typed: bool) -> list[Any] | None:
    try:
        joined = "".join(column)  # a TypeError for anything but strings
    except TypeError:
        return None
    if not joined.isprintable():
        return None
    if not typed and ("" in column or max(map(len, column)) > MAX_ID_LEN):
        return None
    return column


def _meters_look(column: list[Any], rules: Rules, _typed: bool) -> list[Any] | None:
    try:
        names = set(column)
        joined = "".join(names)  # only strings equal strings: their types are the column's
    except TypeError:
        return None
    if "" in names or not joined.isprintable() or not all(map(rules.meters.__contains__, names)):
        return None
    return column


def _values_look(column: list[Any], _rules: Rules, typed: bool) -> list[Any] | None:
    if typed:
        kinds: set[type] = {float}  # the typed decoder vouches for doubles in range
    else:
        kinds = set(map(type, column))  # of the column: 1 and 1.0 are one member of a set
        if not kinds <= {float, int}:
            return None
    distinct = set(column)
    in_range = typed or (min(distinct) >= 0 and max(distinct) <= MAX_VALUE)
    if not in_range or not all(map(fits, distinct)):  # a NaN fails `fits`
        return None
    if 0.0 not in distinct and int not in kinds:
        return column  # doubles already, none of them -0.0
    return [float(v) or 0.0 for v in column]


def _timestamps_look(column: list[Any], rules: Rules, _typed: bool) -> list[Any] | None:
    """The times in epoch ms (now where absent) when every one is within the window."""
    kinds = set(map(type, column))
    now = rules.now_ms
    if kinds == {_NONE}:
        return [now] * len(column)
    if kinds == {int}:
        stamps = column
    elif kinds <= {int, str, _NONE}:
        written = "\n".join(v for v in column if v.__class__ is str)
        if str in kinds and _RFC3339_LINES.fullmatch(written + "\n") is None:
            return None
        stamps = [now if v is None else v if v.__class__ is int else rfc3339_ms(v) for v in column]
        if None in stamps:
            return None
    else:
        return None
    low = max(now - rules.lateness_ms, 0)
    high = min(now + rules.future_ms, EPOCH_MS_LIMIT - 1)
    return stamps if low <= min(stamps) and max(stamps) <= high else None


def _properties_look(column: list[Any], _rules: Rules, typed: bool) -> list[Any] | None:
    if not typed and not set(map(type, column)) <= {_NONE, dict}:
        return None
    if not any(column):
        return [None] * len(column)
    given = list(filter(None, column))
    if not typed and max(map(len, given)) > MAX_PROPERTIES:
        return None
    try:
        orjson.dumps(given, option=_STRICT)  # each at the depth of the event's properties
    except TypeError:
        return None
    return column if {} not in column else [p or None for p in column]


FIELD_RULES: dict[str, tuple[Check, Look]] = {
    "id": (_text, _texts_look),
    "customer": (_text, _texts_look),
    "meter": (_meter, _meters_look),
    "value": (_value, _values_look),
    "timestamp": (_timestamp, _timestamps_look),
    "properties": (_properties, _properties_look),
}
"""Each field sent (`EVENT_FIELDS`): its rule, value by value, and its quick look."""
