"""Rules every HTTP boundary applies to text and times before they reach storage.

Postgres refuses a NUL in text and Python's datetime stops at years 1 and 9999, so input that
breaks either would fail deep in a repository as a 5xx. The boundaries (request models, path
and query parameters) apply these rules instead and answer 422 naming the field:
- an identifier (customer id, cursor, key, email) holds no control character (C0 or DEL);
- free text (a note, a name) may hold a tab or a line break, no other control character;
- an instant carries a time zone and lies in [1970-01-01, 9000-01-01) UTC, far enough from
  datetime's limits that a query's windows and a push's look-back never overflow.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator

IDENTIFIER = r"^[^\x00-\x1f\x7f]*$"
FREE_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MESSAGES = {
    IDENTIFIER: "must not contain control characters (U+0000-U+001F, U+007F)",
    FREE_TEXT: "must not contain control characters other than tab and line breaks",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FREE_TEXT = re.compile(FREE_TEXT)
RANGE = "must lie between 1970-01-01 and 9000-01-01 (UTC)"


def has_control(text: str) -> bool:
    """True when `text` breaks the identifier rule."""
    return _CONTROL.search(text) is not None


def is_free_text(text: str) -> bool:
    """True when `text` keeps the free-text rule."""
    return _FREE_TEXT.match(text) is not None


def instant(when: datetime) -> datetime:
    """`when` in UTC; ValueError when it has no time zone or lies outside the range."""
    if when.tzinfo is None:
        raise ValueError("must carry a time zone (e.g. Z)")
    try:
        utc = when.astimezone(UTC)
    except OverflowError:
        raise ValueError(RANGE) from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(RANGE)
    return utc


def day(value: date) -> date:
    """`value` when it lies in the range; ValueError otherwise."""
    if not EARLIEST.date() <= value < LATEST.date():
        raise ValueError(RANGE)
    return value


Instant = Annotated[datetime, AfterValidator(instant)]
Day = Annotated[date, AfterValidator(day)]


def friendly_message(error: Any) -> str:
    """A pydantic or FastAPI error's message, with the rules above said in words."""
    pattern = (error.get("ctx") or {}).get("pattern")
    if error.get("type") == "string_pattern_mismatch" and pattern in MESSAGES:
        return MESSAGES[pattern]
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")
