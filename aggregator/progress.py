"""Is the consumer making progress? Lag per partition and the time of the last progress.

Progress is a committed batch, or a moment with no lag at all. `/readyz` fails when there is
lag and no progress for `stall_s` seconds: a stalled consumer (an outage, a stuck partition)
becomes visible while an idle one stays ready. It also fails while the consumer waits for a
dependency (`waiting_for`), e.g. Postgres down at start-up, when no lag is known yet, and
while a partition is stopped on a position mismatch (`halted`: partition -> why), until an
operator resolves it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Progress:
    def __init__(self, stall_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self._stall = stall_s
        self._now = now
        self._lock = threading.Lock()
        self._last = now()
        self._lag: dict[int, int] = {}
        self._waiting: str | None = None
        self._halted: dict[int, str] = {}
        self.running = True

    def halted(self, why: dict[int, str]) -> None:
        """The partitions stopped now, each with the reason an operator reads."""
        with self._lock:
            self._halted = dict(why)

    def waiting_for(self, dependency: str | None) -> None:
        """The dependency an outage keeps the consumer waiting for; None once it answered."""
        with self._lock:
            self._waiting = dependency

    def committed(self) -> None:
        with self._lock:
            self._last = self._now()

    def lag(self, per_partition: dict[int, int]) -> None:
        with self._lock:
            self._lag = dict(per_partition)
            if not any(self._lag.values()):
                self._last = self._now()

    def status(self) -> tuple[bool, dict[str, object]]:
        """(ready, details for the /readyz body)."""
        with self._lock:
            idle = self._now() - self._last
            lagging = sum(self._lag.values())
            waiting = self._waiting
            halted = {str(p): why for p, why in sorted(self._halted.items())}
        ready = self.running and waiting is None and not halted
        ready = ready and (lagging == 0 or idle < self._stall)
        details: dict[str, object] = {"lag": lagging, "seconds_since_progress": round(idle, 1)}
        if waiting is not None:
            details["waiting_for"] = waiting
        if halted:
            details["halted"] = halted
        return ready, details
