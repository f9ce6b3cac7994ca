"""Building blocks of catalog validation: problem collection with paths, and scalar converters.

Converters are pure: they return the typed value or raise `Invalid` with a message for a person.
`Context` and `Entry` record every problem under its path and keep going, so one pass reports all.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TypeVar

from meterline.catalog.model import KEY_PATTERN, FeatureKind, Limit, StaticValue
from meterline.errors import FieldError
from meterline.values import FRACTION_DIGITS, shape

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
Path = tuple[str | int, ...]

ROOT = "<catalog>"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VALUE_PROPERTY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_CURRENCY = re.compile(r"[a-z]{3}")
MAX_PRICE_AMOUNT = 99_999_999
MAX_DECIMAL_PLACES = 12
MAX_NAME_LENGTH = 200
MAX_STATIC_STRING_LENGTH = 1000


class Invalid(Exception):
    """A value broke a rule; the message says what a valid one looks like."""


def format_path(path: Path) -> str:
    """`("plans", 1, "features", "api_calls")` -> `plans[1].features.api_calls`."""
    out = ""
    for segment in path:
        if isinstance(segment, int):
            out += f"[{segment}]"
        elif _IDENTIFIER.fullmatch(segment):
            out += f".{segment}" if out else segment
        else:
            out += f"[{json.dumps(segment)}]"
    return out or ROOT


def type_name(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return names.get(type(value), f"a {type(value).__name__}")


def one_of(values: Iterable[str]) -> str:
    return ", ".join(values)


class Context:
    """Collects problems, plus the keys each section declares, for cross-reference checks."""

    def __init__(self) -> None:
        self.problems: list[tuple[Path, FieldError]] = []
        self.meters: tuple[str, ...] = ()
        self.features: Mapping[str, FeatureKind | None] = {}
        self.feature_meters: Mapping[str, str] = {}
        self.plans: tuple[str, ...] = ()

    def fail(self, path: Path, message: str) -> None:
        self.problems.append((path, FieldError(field=format_path(path), message=message)))

    def sorted_problems(self, sections: tuple[str, ...]) -> list[FieldError]:
        """Problems in document order of section and entry, each entry's in the order found."""

        def position(path: Path) -> tuple[int, int]:
            section = sections.index(path[0]) if path and path[0] in sections else -1
            index = path[1] if len(path) > 1 and isinstance(path[1], int) else -1
            return section, index

        ordered = sorted(self.problems, key=lambda item: position(item[0]))
        return [problem for _, problem in ordered]

    def mapping(
        self, raw: object, path: Path, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, object] | None:
        """The known fields of `raw`; unknown and missing required keys are problems."""
        if not isinstance(raw, dict):
            self.fail(path, f"must be a mapping, not {type_name(raw)}")
            return None
        allowed = required + optional
        for key in raw:
            if key not in allowed:
                self.fail((*path, str(key)), f"unknown key; expected one of {one_of(allowed)}")
        for key in required:
            if key not in raw:
                self.fail((*path, key), "required")
        return {k: v for k, v in raw.items() if k in allowed}


class Entry:
    """One mapping being read: `get` converts a field, recording its problem on failure.

    `failed` tells whether anything under this entry's path was wrong, in which case the values
    returned (defaults stand in for bad fields) must not be used to build an object.
    """

    def __init__(
        self,
        ctx: Context,
        raw: object,
        path: Path,
        required: tuple[str, ...] = (),
        optional: tuple[str, ...] = (),
    ) -> None:
        self.ctx = ctx
        self.path = path
        self._start = len(ctx.problems)
        self.fields = ctx.mapping(raw, path, required, optional) or {}

    @property
    def failed(self) -> bool:
        return len(self.ctx.problems) > self._start

    def has(self, name: str) -> bool:
        return name in self.fields

    def get(self, name: str, convert: Callable[[object], T], default: T) -> T:
        if name not in self.fields:
            return default
        try:
            return convert(self.fields[name])
        except Invalid as problem:
            self.ctx.fail((*self.path, name), str(problem))
            return default

    def fail(self, name: str, message: str) -> None:
        self.ctx.fail((*self.path, name), message)


def key(value: object) -> str:
    if isinstance(value, str) and KEY_PATTERN.fullmatch(value):
        return value
    raise Invalid(
        f"must be a key (a lower-case letter, then up to 63 lower-case letters, digits or "
        f"underscores), not {json.dumps(value) if isinstance(value, str) else type_name(value)}"
    )


def choice(enum: type[E]) -> Callable[[object], E]:
    def convert(value: object) -> E:
        if isinstance(value, str) and value in enum._value2member_map_:
            return enum(value)
        raise Invalid(f"must be one of {one_of(m.value for m in enum)}")

    return convert


def integer(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    def convert(value: object) -> int:
        too_big = maximum is not None and isinstance(value, int) and value > maximum
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or too_big:
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise Invalid(f"must be an integer {bound}")
        return value

    return convert


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise Invalid(f"must be true or false, not {type_name(value)}")


def name(value: object) -> str:
    if isinstance(value, str) and value.strip() and len(value) <= MAX_NAME_LENGTH:
        return value
    raise Invalid(f"must be a non-blank string of at most {MAX_NAME_LENGTH} characters")


def value_property(value: object) -> str:
    if isinstance(value, str) and _VALUE_PROPERTY.fullmatch(value):
        return value
    raise Invalid(
        "must be a property name: letters, digits and underscores, not starting with a digit"
    )


def currency(value: object) -> str:
    if isinstance(value, str) and _CURRENCY.fullmatch(value.lower()):
        return value.lower()
    raise Invalid("must be a three-letter ISO 4217 currency code such as usd")


def _finite_decimal(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def unit_amount_decimal(value: object) -> Decimal:
    if not isinstance(value, str):
        raise Invalid('must be a decimal string such as "0.05" (quoted, so it stays exact)')
    number = _finite_decimal(value)
    if number is None or number < 0:
        raise Invalid(f'must be a decimal >= 0 such as "0.05", not {json.dumps(value)}')
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
        raise Invalid(f"must have at most {MAX_DECIMAL_PLACES} decimal places")
    return number


def _integral_or_decimal(number: Decimal) -> Limit:
    return int(number) if number == number.to_integral_value() else number


def limit(value: object) -> Limit | None:
    """`None` (unlimited), or a number >= 0: an `int` when integral, else a `Decimal`."""
    if value is None:
        return None
    number: Decimal | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, float) and math.isfinite(value):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        number = _finite_decimal(value)
    if number is None or number < 0:
        raise Invalid("must be a number >= 0, or null for unlimited")
    if shape(number)[0] > FRACTION_DIGITS:
        raise Invalid(f"at most {FRACTION_DIGITS} decimal places, as usage values")
    return value if isinstance(value, int) else _integral_or_decimal(number)


def static_value(value: object) -> StaticValue:
    if isinstance(value, str) and len(value) <= MAX_STATIC_STRING_LENGTH:
        return value
    if isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise Invalid(
        f"must be a string (at most {MAX_STATIC_STRING_LENGTH} characters), a finite number "
        f"or true/false, not {type_name(value)}"
    )
