"""The oracle of the pipeline model (test_consume_model.py): what every answer must be and what
the pipeline must end up counting, from the requests alone.

It shares no code with Meterline: the period arithmetic (a fixed length, or whole months
from an anchor whose day is at most 28, so no clamping) and the contract are restated here.
The contract it holds the services to: an id belongs to whoever used it first (consume or
ingest, one id space per tenant); a consume is granted exactly when the customer's period
total (counted events plus grants whose event is not counted yet) leaves room for it, and a
repeat gets its first answer; an ingest event reusing a consume's id is a duplicate; a consume
reusing an ingest id is refused with 409; a 503 leaves the consume's fate unknown until its
retry; every event answered 202 or granted is counted once, with its first value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

MINUTE_MS = 60_000
WEEK_MS = 7 * 86_400_000


def months_later(ms: int, months: int) -> int:
    """`ms` moved by whole calendar months (the anchor's day is at most 28: no clamping)."""
    when = datetime.fromtimestamp(ms / 1000, UTC)
    index = when.year * 12 + when.month - 1 + months
    return int(when.replace(year=index // 12, month=index % 12 + 1).timestamp() * 1000)


@dataclass(frozen=True)
class Cycle:
    """A customer's limit cycle: periods of `months` calendar months (or of `fixed_ms`) from
    `anchor_ms`, each allowing `limit`."""

    anchor_ms: int
    limit: int
    months: int = 0
    fixed_ms: int = 0

    def period(self, at_ms: int) -> tuple[int, int]:
        if self.fixed_ms:
            k = (at_ms - self.anchor_ms) // self.fixed_ms
            start = self.anchor_ms + k * self.fixed_ms
            return start, start + self.fixed_ms
        k = 0
        while months_later(self.anchor_ms, (k + 1) * self.months) <= at_ms:
            k += 1
        while months_later(self.anchor_ms, k * self.months) > at_ms:
            k -= 1
        return (
            months_later(self.anchor_ms, k * self.months),
            months_later(self.anchor_ms, (k + 1) * self.months),
        )


@dataclass
class Use:
    """One id's event as the oracle expects it counted: who, how much, and when (a window of
    instants: the clock read before and after the request that first carried it)."""

    customer: str
    value: Decimal
    lo_ms: int
    hi_ms: int
    consume: bool


@dataclass
class Oracle:
    cycles: dict[str, Cycle]
    uses: dict[str, Use] = field(default_factory=dict)  # ids answered 202 or granted
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    asked: dict[str, Use] = field(default_factory=dict)  # a consume's first request
    unknown: set[str] = field(default_factory=set)  # consumes answered 503, not yet retried
    remembered: set[str] = field(default_factory=set)  # ingest ids its dedupe store holds
    tally: dict[str, int] = field(default_factory=dict)
    lagging: bool = False  # the aggregator is down: ingest's events wait to be counted
    uncounted: set[str] = field(default_factory=set)  # accepted while it was down

    def counting(self) -> None:
        """The aggregator runs again: what it was down for is counted once it settles."""
        self.lagging = False
        self.uncounted.clear()

    def count(self, what: str) -> None:
        self.tally[what] = self.tally.get(what, 0) + 1

    def total(self, customer: str, at_ms: int) -> Decimal:
        """Counted usage plus pending grants of the customer's period holding `at_ms` (what
        ingest accepted while the aggregator was down is not counted yet)."""
        start, end = self.cycles[customer].period(at_ms)
        counted = [u for i, u in self.uses.items() if i not in self.uncounted]
        held = [*counted, *(self.asked[i] for i in self.unknown)]
        return sum(
            (u.value for u in held if u.customer == customer and start <= u.lo_ms < end),
            Decimal(0),
        )

    def granted(self, customer: str, at_ms: int) -> Decimal:
        """What consume granted (or may have: 503s) in the customer's period holding `at_ms`."""
        start, end = self.cycles[customer].period(at_ms)
        ids = [i for i, (s, _b) in self.answers.items() if s == 200] + sorted(self.unknown)
        return sum(
            (
                self.asked[i].value
                for i in ids
                if self.asked[i].customer == customer and start <= self.asked[i].lo_ms < end
            ),
            Decimal(0),
        )

    def on_consume(self, event_id: str, ask: Use, status: int, body: dict[str, Any]) -> None:
        if event_id in self.answers:
            assert (status, body) == self.answers[event_id], event_id
            self.count("consume_repeat")
        elif event_id in self.unknown:
            assert status in (200, 503), (event_id, status, body)
            if status == 200:
                self.unknown.discard(event_id)
                self.answers[event_id] = (status, body)
                self.uses[event_id] = self.asked[event_id]
                self.count("consume_resolved")
        elif event_id in self.uses:
            assert status == 409, (event_id, status, body)
            self.answers[event_id] = (status, body)
            self.count("consume_409")
        else:
            self._first(event_id, ask, status, body)

    def _first(self, event_id: str, ask: Use, status: int, body: dict[str, Any]) -> None:
        limit = self.cycles[ask.customer].limit
        room = self.total(ask.customer, ask.lo_ms) + ask.value <= limit
        expected = (200, 503) if room else (403,)
        assert status in expected, (event_id, ask, self.total(ask.customer, ask.lo_ms), body)
        self.asked[event_id] = ask
        self.count(f"consume_{status}")
        if status == 503:
            self.unknown.add(event_id)
            return
        self.answers[event_id] = (status, body)
        if status == 200:
            self.uses[event_id] = ask
            start, end = self.cycles[ask.customer].period(ask.lo_ms)
            assert body["used"] == float(self.total(ask.customer, ask.lo_ms)), body
            assert _ms(body["period"]["start"]) == start and _ms(body["period"]["end"]) == end

    def on_ingest(self, event_id: str, use: Use, answer: dict[str, Any]) -> None:
        """`answer` to one event; a resent id carries its first value (it is the same event)."""
        duplicate = {"accepted": 0, "duplicates": 1}
        consumed = event_id in self.asked and (
            event_id in self.unknown or self.answers[event_id][0] == 200
        )
        if consumed or event_id in self.remembered:
            assert answer == duplicate, (event_id, answer)
            self.count("ingest_duplicate")
        elif event_id in self.uses:  # ingest's own id, forgotten by a flushed store: a copy
            assert answer in (duplicate, {"accepted": 1, "duplicates": 0}), (event_id, answer)
            self.count("ingest_copy_passed")
        else:
            assert answer == {"accepted": 1, "duplicates": 0}, (event_id, answer)
            self.uses[event_id] = use
            if self.lagging:
                self.uncounted.add(event_id)
            self.count("ingest_accepted")
        if not consumed:
            self.remembered.add(event_id)

    def forget_ingest_marks(self) -> None:
        """A Redis flush: the dedupe store forgot ingest's ids (consume's stay durable)."""
        self.remembered.clear()

    def expected_ledger(self) -> dict[str, tuple[str, Decimal]]:
        return {i: (u.customer, u.value) for i, u in self.uses.items()}


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
