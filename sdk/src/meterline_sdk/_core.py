"""What both SDK clients share: the bounded buffer, the event shape, answers and backoff.

Kept free of I/O so the threaded and the asyncio client behave the same way.
"""

from __future__ import annotations

import enum
import os
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

Event = dict[str, Any]


class DropPolicy(enum.StrEnum):
    """What `record` does when the buffer is full: drop the new event or the oldest one."""

    NEWEST = "drop_newest"
    OLDEST = "drop_oldest"


@dataclass
class ClientStats:
    """Counters since the client started (read `client.stats` for a snapshot)."""

    recorded: int = 0
    accepted: int = 0
    duplicates: int = 0
    dropped: int = 0
    """Dropped by the buffer policy because the buffer was full."""
    rejected: int = 0
    """Refused by the server as invalid (4xx other than 408, 429); never retried."""
    abandoned: int = 0
    """Still unsent when `close` ran out of time."""
    retries: int = 0
    last_error: str | None = field(default=None)


def new_event(
    customer: str,
    meter: str,
    value: float | Decimal,
    id: str | None,
    timestamp: datetime | int | None,
    properties: Mapping[str, Any] | None,
) -> Event:
    """The wire event: a UUIDv7 id unless given, and the timestamp fixed now (epoch ms).

    The timestamp is fixed at `record` time because the ledger's identity includes the event's
    UTC day: every retry must carry the same one.
    """
    if timestamp is None:
        ms = time.time_ns() // 1_000_000
    elif isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must carry a time zone")
        ms = int(timestamp.timestamp() * 1000)
    else:
        ms = int(timestamp)
    event: Event = {
        "id": id if id is not None else uuid7(),
        "customer": customer,
        "meter": meter,
        "value": value,
        "timestamp": ms,
    }
    if properties:
        event["properties"] = dict(properties)
    return event


def uuid7() -> str:
    """A random UUIDv7 (RFC 9562): 48 bits of epoch milliseconds, then 74 random bits.

    Written here rather than imported so the SDK depends on httpx and orjson alone. The bits
    come from a generator of this module's own, seeded from the OS at import and again in
    every forked child, so an app's `random.seed(...)` cannot make two processes draw the
    same ids (which the server would drop as duplicates).
    """
    ms = time.time_ns() // 1_000_000 & _MS
    value = (ms << 80 | _random.getrandbits(80)) & _CLEAR | _SET
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_random = random.Random()
os.register_at_fork(after_in_child=_random.seed)
_MS = (1 << 48) - 1
_CLEAR = ~(0xF << 76 | 0x3 << 62)
_SET = 0x7 << 76 | 0x2 << 62
"""The version (7) and variant (0b10) bits, cleared then set."""


class EventBuffer:
    """A thread-safe FIFO of at most `capacity` events with a drop policy."""

    def __init__(self, capacity: int, policy: DropPolicy, stats: ClientStats) -> None:
        self._items: deque[Event] = deque()
        self._capacity, self._policy, self._stats = capacity, policy, stats
        self.lock = threading.Lock()

    def add(self, event: Event) -> int:
        """Append (or drop per policy); returns the buffer's length afterwards."""
        with self.lock:
            self._stats.recorded += 1
            if len(self._items) >= self._capacity:
                self._stats.dropped += 1
                if self._policy is DropPolicy.NEWEST:
                    return len(self._items)
                self._items.popleft()
            self._items.append(event)
            return len(self._items)

    def take(self, n: int) -> list[Event]:
        with self.lock:
            return [self._items.popleft() for _ in range(min(n, len(self._items)))]

    def __len__(self) -> int:
        return len(self._items)


class Verdict(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    DROP_INVALID = "drop_invalid"
    SPLIT = "split"
    FATAL = "fatal"


@dataclass(frozen=True)
class Answer:
    """What to do with a batch after one attempt."""

    verdict: Verdict
    accepted: int = 0
    duplicates: int = 0
    retry_after: float | None = None
    bad_indexes: frozenset[int] = frozenset()
    error: str | None = None


def judge(status: int, headers: Mapping[str, str], body: bytes, size: int) -> Answer:
    """Classify a response to a batch of `size` events."""
    if status == 202:
        doc = _json(body)
        return Answer(Verdict.SENT, int(doc.get("accepted", 0)), int(doc.get("duplicates", 0)))
    error = f"HTTP {status}: {body[:300].decode(errors='replace')}"
    if status in (408, 429) or status >= 500:
        return Answer(Verdict.RETRY, retry_after=_retry_after(headers), error=error)
    if status == 413 and size > 1:
        return Answer(Verdict.SPLIT, error=error)
    if status == 422:
        bad = {e.get("index") for e in _json(body).get("errors", []) if isinstance(e, dict)}
        indexes = frozenset(i for i in bad if isinstance(i, int) and 0 <= i < size)
        if indexes and len(indexes) < size:
            return Answer(Verdict.DROP_INVALID, bad_indexes=indexes, error=error)
    return Answer(Verdict.FATAL, error=error)


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return min(float(value), 300.0) if value is not None else None
    except ValueError:
        return None


def backoff(attempt: int, retry_after: float | None, base: float, cap: float) -> float:
    """Seconds before attempt `attempt + 1`: full-jitter exponential, at least Retry-After."""
    jittered = random.uniform(0, min(cap, base * 2**attempt))
    return max(jittered, retry_after or 0.0)


def encode(batch: list[Event]) -> bytes:
    """The batch as JSON; a `Decimal` value is written as its exact digits (the service refuses
    one beyond its rule, 15 significant digits and 6 decimals, with a 422 naming it)."""
    return orjson.dumps(batch, default=_exact_number)


def _exact_number(obj: Any) -> Any:
    if isinstance(obj, Decimal) and obj.is_finite():
        return orjson.Fragment(format(obj, "f").encode())
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")
