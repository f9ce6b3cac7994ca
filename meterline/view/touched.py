"""Which customers' usage the view changed: the feed threshold detection reads.

Usage that arrives only through ingest is counted by the aggregator and never passes the
entitlements service, so nothing there would look at it. The view therefore keeps, beside the
usage, the set of customers a batch changed: the APPLY script that adds a batch's deltas
also marks each of the batch's customers as *touched*, in the same atomic step (a batch in
the view is always marked; a batch skipped as already applied was marked the first time). A
rebuild's loads mark every customer they load, so after a Redis flush each customer with
usage is looked at again. The detector (`meterline.entitlements.usage_notices`) takes the
customers touched longest ago, decides their limited features, records the notices, and then
drops each one it looked at *unless it was touched again meanwhile*.

The feed is a set, not a log: a customer touched by a thousand batches while the detector was
busy is one entry, so the detector's work is bounded by the number of customers whose usage
changed, not by the number of events, and it can never fall behind by more than that. An
entry is a member `<tenant_id>/<customer>` of a Redis sorted set (`<prefix>:touched`) scored
by a counter (`<prefix>:touched:seq`) that each APPLY increments once: a later touch always
has a higher score, so `done` recognises an entry touched again after `take` and keeps it
(a time in milliseconds would not: two batches in one millisecond share it).

Nothing in the feed is the only copy of anything: it says whom to look at, and the decision
reads the usage itself. Losing it (Redis flushed) loses only the customers touched but not yet
looked at between the last pass and the flush; the rebuild that follows marks everyone again.

`RedisTouched` reads the set the Redis view writes; `MemoryTouched` is the in-memory twin the
memory view writes (`MemoryUsageView(touched=...)`). tests/view/test_touched.py runs one
contract suite against both.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from meterline.view.keys import KeyLayout

# KEYS: the touched set. ARGV: pairs of member, score as `take` saw it.
# Drops each member whose score is unchanged; returns how many it dropped.
DONE = r"""
local dropped = 0
for i = 1, #ARGV, 2 do
  local now = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if now and tonumber(now) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
"""


@dataclass(frozen=True, slots=True)
class Touch:
    """A customer whose usage changed; `stamp` orders the touches (a later one is higher)."""

    tenant_id: int
    customer: str
    stamp: int


def member(tenant_id: int, customer: str) -> str:
    """The feed's member for a customer (the tenant id holds no `/`, the customer may)."""
    return f"{tenant_id}/{customer}"


def members(pairs: Iterable[tuple[int, str]]) -> list[str]:
    """The distinct members of `pairs` (tenant id, customer), in first-seen order (each
    distinct pair formatted once: a batch's deltas repeat their customers)."""
    return [member(t, c) for t, c in dict.fromkeys(pairs)]


def parse(raw: bytes | str, stamp: float) -> Touch:
    text = raw.decode() if isinstance(raw, bytes) else raw
    tenant, _, customer = text.partition("/")
    return Touch(int(tenant), customer, int(stamp))


class TouchedCustomers(abc.ABC):
    """The customers whose usage changed and whom no one has looked at since."""

    @abc.abstractmethod
    def stamp(self) -> int:
        """The stamp of the latest touch so far (0 before any): `take(limit, up_to=stamp())`
        leaves out whatever is touched after this call."""

    @abc.abstractmethod
    def take(self, limit: int, up_to: int | None = None) -> list[Touch]:
        """Up to `limit` touched customers whose stamp is at most `up_to` (None: any), touched
        longest ago first; they stay in the feed until `done`. Raises the store's error when it
        does not answer."""

    @abc.abstractmethod
    def done(self, touches: Sequence[Touch]) -> int:
        """Drop each of `touches` not touched again since it was taken; how many were dropped."""

    @abc.abstractmethod
    def backlog(self) -> int:
        """How many customers wait to be looked at."""


class MemoryTouched(TouchedCustomers):
    """The in-memory twin; `touch` is what the memory view calls for a batch's customers."""

    def __init__(self) -> None:
        self._stamps: dict[tuple[int, str], int] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def touch(self, pairs: Iterable[tuple[int, str]]) -> None:
        with self._lock:
            self._seq += 1
            for pair in pairs:
                self._stamps.pop(pair, None)  # re-inserted last: the order is by stamp
                self._stamps[pair] = self._seq

    def stamp(self) -> int:
        with self._lock:
            return self._seq

    def take(self, limit: int, up_to: int | None = None) -> list[Touch]:
        with self._lock:
            found = sorted(self._stamps.items(), key=lambda kv: kv[1])
        found = [kv for kv in found if up_to is None or kv[1] <= up_to][:limit]
        return [Touch(t, c, s) for (t, c), s in found]

    def done(self, touches: Sequence[Touch]) -> int:
        dropped = 0
        with self._lock:
            for t in touches:
                if self._stamps.get((t.tenant_id, t.customer)) == t.stamp:
                    del self._stamps[(t.tenant_id, t.customer)]
                    dropped += 1
        return dropped

    def backlog(self) -> int:
        with self._lock:
            return len(self._stamps)


class RedisTouched(TouchedCustomers):
    """The set `RedisUsageView(..., touched=True)` writes under `prefix`."""

    def __init__(self, client: Any, prefix: str = "ml") -> None:
        self._r = client
        layout = KeyLayout(prefix)
        self.key, self._seq = layout.touched, layout.touched_seq
        self._done = client.register_script(DONE)

    def stamp(self) -> int:
        return int(self._r.get(self._seq) or 0)

    def take(self, limit: int, up_to: int | None = None) -> list[Touch]:
        top = "+inf" if up_to is None else up_to
        found = self._r.zrangebyscore(self.key, "-inf", top, 0, limit, withscores=True)
        return [parse(m, s) for m, s in found]

    def done(self, touches: Sequence[Touch]) -> int:
        if not touches:
            return 0
        args = [x for t in touches for x in (member(t.tenant_id, t.customer), str(t.stamp))]
        return int(self._done(keys=[self.key], args=args))

    def backlog(self) -> int:
        return int(self._r.zcard(self.key))
