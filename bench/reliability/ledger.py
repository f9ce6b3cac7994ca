"""The client's ledger of every event it sent, and the comparison of what was counted against it.

Events are numbered: event `n` has the id `<prefix>-<n:012d>`, so the ledger keeps a few compact
arrays instead of a dict per event (a million events cost a few MB). For each event it keeps the
customer, meter and value, whether it was ever sent, and whether any request holding it got a
202. A retry resends the same ids with the same values, so "acknowledged" is a property of the id.

`compare` is pure: it takes what Postgres (ledger rows, rollups), the Redis view and Stripe
report and says what was lost (acknowledged, not counted), doubled (counted more than once,
or rollups above the ledger rows) and unknown (counted, never sent).
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (customer, meter)


@dataclass(frozen=True)
class Total:
    value: float
    count: int


class Ledger:
    """What one load generator sent. Not thread-safe: one event loop owns it."""

    def __init__(self, prefix: str, customers: Sequence[str], meters: Sequence[str]) -> None:
        self.prefix = prefix
        self.customers = list(customers)
        self.meters = list(meters)
        self._customer = array("I")
        self._meter = array("B")
        self._value = array("d")
        self._timestamp = array("q")
        self._acked = bytearray()
        self.sends = 0
        self.outcomes: Counter[str] = Counter()
        self.acked_count = 0
        self.last_ack = 0.0

    def __len__(self) -> int:
        return len(self._value)

    def new_event(self, customer: int, meter: int, value: float, timestamp_ms: int) -> int:
        """Allocate the next event number."""
        self._customer.append(customer)
        self._meter.append(meter)
        self._value.append(value)
        self._timestamp.append(timestamp_ms)
        self._acked.append(0)
        return len(self._value) - 1

    def event_id(self, n: int) -> str:
        return f"{self.prefix}-{n:012d}"

    def number(self, event_id: str) -> int | None:
        """The event number of an id this ledger issued, else None."""
        head, _, tail = event_id.rpartition("-")
        if head != self.prefix or not tail.isdigit() or int(tail) >= len(self._value):
            return None
        return int(tail)

    def event(self, n: int) -> dict[str, Any]:
        """Event `n` as ingest's native JSON object."""
        return {
            "id": self.event_id(n),
            "customer": self.customers[self._customer[n]],
            "meter": self.meters[self._meter[n]],
            "value": self._value[n],
            "timestamp": self._timestamp[n],
        }

    def key(self, n: int) -> Key:
        return self.customers[self._customer[n]], self.meters[self._meter[n]]

    def value(self, n: int) -> float:
        return self._value[n]

    def record(self, numbers: Sequence[int], outcome: str) -> None:
        """One request carrying `numbers` ended with `outcome` ("202", "503", "Timeout", ...)."""
        self.sends += len(numbers)
        self.outcomes[outcome] += 1
        if outcome == "202":
            self.last_ack = time.monotonic()
            for n in numbers:
                if not self._acked[n]:
                    self._acked[n] = 1
                    self.acked_count += 1

    def acked(self, n: int) -> bool:
        return bool(self._acked[n])

    def expected(self) -> dict[Key, Total]:
        """Per (customer, meter): the sum and count over distinct acknowledged ids."""
        return totals((self.key(n), self._value[n]) for n in range(len(self)) if self._acked[n])


def totals(items: Iterable[tuple[Key, float]]) -> dict[Key, Total]:
    sums: dict[Key, float] = {}
    counts: Counter[Key] = Counter()
    for key, value in items:
        sums[key] = sums.get(key, 0.0) + value
        counts[key] += 1
    return {k: Total(sums[k], counts[k]) for k in sums}


@dataclass
class Verdict:
    """The comparison of one scenario's ledger with what the system counted."""

    sent: int
    acked: int
    counted: int
    lost: int
    doubled: int
    unknown: int
    counted_unacked: int
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.unknown or self.mismatches)


def compare(
    ledger: Ledger,
    counted_ids: Iterable[str],
    rollups: Mapping[Key, Total],
    views: Mapping[str, Mapping[Key, float]] | None = None,
    view_meters: Mapping[str, Collection[str]] | None = None,
) -> Verdict:
    """Compare the Postgres ledger rows (`counted_ids`, one per row), the rollups and each
    derived view (name -> value per key, e.g. "redis", "stripe") with the client's ledger.

    Rollups must equal the ledger rows exactly (sum and count per key); every view must equal
    the rollups' sums (only for the meters `view_meters` names for it, when it names any);
    every acknowledged id must be counted once.
    """
    seen = bytearray(len(ledger))
    unknown = doubled = 0
    for event_id in counted_ids:
        n = ledger.number(event_id)
        if n is None:
            unknown += 1
        elif seen[n]:
            doubled += 1
        else:
            seen[n] = 1
    counted = [n for n in range(len(ledger)) if seen[n]]
    lost = sum(1 for n in range(len(ledger)) if ledger.acked(n) and not seen[n])
    from_rows = totals((ledger.key(n), ledger.value(n)) for n in counted)
    extra, mismatches = _rollup_mismatches(from_rows, rollups)
    for name, view in (views or {}).items():
        mismatches += view_mismatches(name, rollups, view, (view_meters or {}).get(name))
    unacked = sum(1 for n in counted if not ledger.acked(n))
    return Verdict(
        len(ledger),
        ledger.acked_count,
        len(counted),
        lost,
        doubled + extra,
        unknown,
        unacked,
        mismatches,
    )


def _rollup_mismatches(
    rows: Mapping[Key, Total], rollups: Mapping[Key, Total]
) -> tuple[int, list[str]]:
    """(events the rollups count beyond the ledger rows, a description of each difference)."""
    extra, found = 0, []
    for key in sorted(set(rows) | set(rollups)):
        want, got = rows.get(key, Total(0.0, 0)), rollups.get(key, Total(0.0, 0))
        if want.count != got.count or not _close(want.value, got.value):
            found.append(f"rollup {key}: ledger rows {want}, rollups {got}")
            extra += max(0, got.count - want.count)
    return extra, found


def view_mismatches(
    name: str,
    rollups: Mapping[Key, Total],
    view: Mapping[Key, float],
    meters: Collection[str] | None = None,
) -> list[str]:
    """Each key (of `meters` only, when given) where `view` differs from the rollups' sum."""
    found = []
    for key in sorted(set(rollups) | set(view)):
        if meters is not None and key[1] not in meters:
            continue
        want, got = rollups.get(key, Total(0.0, 0)).value, view.get(key, 0.0)
        if not _close(want, got):
            found.append(f"{name} {key}: rollups {want:g}, {name} {got:g}")
    return found


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
