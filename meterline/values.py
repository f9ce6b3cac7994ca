"""Usage values: the one rule for what a value may be, and how it is carried and added exactly.

**The rule.** A value (an event's `value`, a consume's `amount`, a grant's amount) is a decimal
number 0 <= v <= 1e15 with at most `FRACTION_DIGITS` (6) digits after the point and at most
`SIGNIFICANT_DIGITS` (15) significant digits. Anything else is refused with a 422 naming the
field (`value_problem`), never rounded. Why these bounds:

- 15 significant digits: every such number is exactly the shortest text of one binary64
  double, and back. So a value can travel as a JSON number through any codec that reads
  numbers as doubles (orjson, msgspec, browsers, the Kafka messages) and come out unchanged,
  and Stripe, which takes 15 significant digits, takes any one value whole. (A JSON number is
  read as the nearest double first, as every codec does: text that carries more than 17
  digits and lands on a short double, such as `0.1000000000000000001`, reads as that double.)
- 6 fractional digits: every value, and every sum of values, is a whole number of millionths
  (`micros`), so the Redis view holds integers (as digit strings, exact at any size) and its
  Lua scripts add and compare them digit by digit, never through a Lua double.

**Exact arithmetic.** Sums (rollups, period usage, usage plus pending plus amount against a
limit) may exceed 15 digits (ten events of 1e15 plus one of 3): they are Python ints of
millionths in hot loops, `Decimal` at interfaces (`from_micros`), Postgres `numeric`, and digit
strings of millionths in Redis. Nothing inside Meterline rounds.

**The one rounding rule.** A quantity is rounded only when it leaves for Stripe: to Stripe's 15
significant digits, half to even (`meterline.stripe.meter_events.quantize`). A single value
never needs it; a sum past 15 digits does.

**JSON out.** Quantities are written as exact JSON numbers (`json_number`): an integer, or the
decimal digits themselves, never through a double that would lose a digit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

import orjson

MAX_VALUE = 10**15
FRACTION_DIGITS = 6
SIGNIFICANT_DIGITS = 15
MICROS = 10**FRACTION_DIGITS
"""Millionths per unit: every value and every sum is a whole number of them."""
RULE = (
    f"a number from 0 to 1e15 with at most {FRACTION_DIGITS} decimal places and at most "
    f"{SIGNIFICANT_DIGITS} significant digits"
)
_MICRO = Decimal(1).scaleb(-FRACTION_DIGITS)
_EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN)
"""Arithmetic on sums far past any real total (1e15 per event, 6 decimals) without rounding."""


def value_problem(v: object) -> str | None:
    """Why `v` is not a value under the rule (a message for a 422), or None. A JSON number
    arrives as an int or a float; a `Decimal` is checked as it is."""
    if isinstance(v, bool) or not isinstance(v, int | float | Decimal):
        return "must be a number"
    if isinstance(v, float) and not math.isfinite(v):
        return "must be finite"
    if isinstance(v, Decimal) and not v.is_finite():
        return "must be finite"
    if not 0 <= v <= MAX_VALUE:
        return "must be between 0 and 1e15"
    places, significant = shape(to_decimal(v))
    if places > FRACTION_DIGITS:
        return f"at most {FRACTION_DIGITS} decimal places ({RULE})"
    if significant > SIGNIFICANT_DIGITS:
        return f"at most {SIGNIFICANT_DIGITS} significant digits ({RULE})"
    return None


def shape(d: Decimal) -> tuple[int, int]:
    """(decimal places, significant digits) of a finite `d`, trailing zeros aside; exact at any
    size (no context rounds it)."""
    _sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).lstrip("0")
    kept = text.rstrip("0")
    if not kept:
        return 0, 0  # zero, however written
    exponent += len(text) - len(kept)
    return max(0, -exponent), len(kept)


def fits(v: float) -> bool:
    """`value_problem(v) is None` for a double already known to be in [0, 1e15], in two
    builtin calls (ingest's hot path checks each distinct value with it): at most 6 decimals
    when rounding to 6 places gives the same double back, at most 15 significant digits when
    its 15-digit text does."""
    return round(v, FRACTION_DIGITS) == v and float(f"{v:.15g}") == v


def to_decimal(v: float | int | Decimal) -> Decimal:
    """The exact decimal a value stands for: a float's shortest text (exact under the rule)."""
    if isinstance(v, float):
        return Decimal(int(v)) if v.is_integer() else Decimal(repr(v))
    return v if isinstance(v, Decimal) else Decimal(v)


def exact(v: float | int | Decimal | None) -> Decimal | None:
    """`to_decimal`, passing None through (an optional amount)."""
    return None if v is None else to_decimal(v)


def micros(v: float | int | Decimal) -> int:
    """`v` in millionths: exact for a value under the rule. (A value outside it, only in a
    message written before the rule, is taken to the nearest millionth, half to even.)"""
    scaled = _EXACT.scaleb(to_decimal(v), FRACTION_DIGITS)  # exact: only the exponent moves
    whole = int(scaled)
    if whole == scaled:
        return whole
    return int(_EXACT.scaleb(_EXACT.quantize(to_decimal(v), _MICRO), FRACTION_DIGITS))


def from_micros(n: int) -> Decimal:
    """The exact `Decimal` of `n` millionths (built from text: no context precision applies)."""
    return Decimal(f"{n}E-{FRACTION_DIGITS}")


def exact_sum(values: Iterable[Decimal | float | int]) -> Decimal:
    """The exact sum of quantities (whole millionths each), whatever its size."""
    return from_micros(sum(map(micros, values)))


def plain(d: Decimal) -> str:
    """Plain decimal digits, no exponent and no trailing zeros (`"12"`, `"0.5"`)."""
    text = format(d.normalize(), "f")
    return "0" if text == "-0" else text


def json_number(d: Decimal | float | int | None) -> Any:
    """An exact JSON number for orjson: an int when integral, a float when its shortest text
    is the exact value, else the digits themselves (`orjson.Fragment`)."""
    if d is None or isinstance(d, int):
        return d
    exact = to_decimal(d)
    if exact == exact.to_integral_value():
        return int(exact)
    as_float = float(exact)
    if Decimal(repr(as_float)) == exact:
        return as_float
    return orjson.Fragment(plain(exact).encode())


def dumps(doc: Any) -> bytes:
    """orjson's bytes of a document that may hold `Decimal` quantities, exact."""
    return orjson.dumps(doc, default=json_default)


def loads(text: str | bytes) -> Any:
    """A JSON document whose numbers come back exact: a float where its shortest text is the
    number written, else a `Decimal` (a sum past 15 digits)."""
    return json.loads(text, parse_float=_exact_float)


def _exact_float(text: str) -> float | Decimal:
    as_float = float(text)
    return as_float if Decimal(repr(as_float)) == Decimal(text) else Decimal(text)


def json_default(obj: Any) -> Any:
    """orjson's `default` for documents that hold `Decimal` quantities (see `json_number`)."""
    if isinstance(obj, Decimal):
        return json_number(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")
