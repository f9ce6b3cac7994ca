"""Injectable time. Code that reads the time takes a `Clock`, so tests can move it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch (UTC)."""
        ...

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | int = 1_800_000_000_000) -> None:
        self._ms = start if isinstance(start, int) else to_ms(start)

    def now_ms(self) -> int:
        return self._ms

    def now(self) -> datetime:
        return from_ms(self._ms)

    def advance(self, seconds: float) -> None:
        self._ms += int(seconds * 1000)

    def set(self, when: datetime) -> None:
        self._ms = to_ms(when)


def to_ms(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("naive datetime: timestamps must carry a time zone")
    return int(when.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
