"""The emulator clock: wall time plus an offset that only moves forward.

Timestamps, periods, windows, token expiry and signatures all use it. Use
`/_emulator/clock/advance` instead of Stripe's test clocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime


class EmulatorClock:
    """Real time shifted by `offset` seconds.

    The control API advances the offset to simulate the passage of days; webhook signature
    timestamps, billing periods and the meter-event windows all read `now()`. The clock never
    goes backwards: `advance` refuses negative amounts.
    """

    def __init__(self, offset: float = 0.0, wall: Callable[[], float] = time.time) -> None:
        self._offset = offset
        self._wall = wall

    @property
    def offset(self) -> float:
        """Seconds added to wall time."""
        return self._offset

    def now(self) -> float:
        """Emulator time in Unix seconds."""
        return self._wall() + self._offset

    def now_int(self) -> int:
        """Emulator time in whole Unix seconds, as v1 objects carry it."""
        return int(self.now())

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` (>= 0) and return the new time.

        Raises ValueError for a negative amount.
        """
        if seconds < 0:
            raise ValueError("the emulator clock cannot go backwards")
        self._offset += seconds
        return self.now()

    def reset(self) -> None:
        """Return to wall time."""
        self._offset = 0.0


def to_rfc3339(ts: float) -> str:
    """Format Unix seconds as the RFC 3339 UTC string v2 objects use."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_rfc3339(text: str) -> float:
    """Parse an RFC 3339 timestamp into Unix seconds; raises ValueError when malformed."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("timestamp needs a time zone")
    return moment.timestamp()
