"""An in-process deduper for tests and tools: same contract as the Redis one."""

from __future__ import annotations

from collections.abc import Sequence

from meterline.clock import Clock, SystemClock
from meterline.dedupe.base import Deduper


class MemoryDeduper(Deduper):
    """Ids in a dict with their expiry; expired entries are purged as the dict grows."""

    def __init__(self, window_s: float = 3600.0, clock: Clock | None = None) -> None:
        self.window_s = window_s
        self._clock = clock or SystemClock()
        self._expiry: dict[tuple[int, str], int] = {}
        self._purge_at = 1024

    async def seen(self, tenant_id: int, ids: Sequence[str]) -> list[bool | None]:
        now = self._clock.now_ms()
        return [self._expiry.get((tenant_id, i), 0) > now for i in ids]

    async def mark(self, tenant_id: int, ids: Sequence[str]) -> None:
        expires = self._clock.now_ms() + int(self.window_s * 1000)
        for i in ids:
            self._expiry[(tenant_id, i)] = expires
        if len(self._expiry) >= self._purge_at:
            self._purge()

    def _purge(self) -> None:
        now = self._clock.now_ms()
        self._expiry = {k: t for k, t in self._expiry.items() if t > now}
        self._purge_at = max(1024, 2 * len(self._expiry))
