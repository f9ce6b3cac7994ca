"""The pure steps of a batch: records in, events and dead letters out, then minute deltas.

Nothing here does I/O, so every rule is tested with plain values (and Hypothesis).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from meterline.catalog.model import Aggregation
from meterline.events import PoisonMessage, UsageEvent, decode_event
from meterline.kafka.consumer import Record
from meterline.kafka.dlq import DeadLetter
from meterline.view.model import DAY_MS, MINUTE_MS, Delta, ReservationKey

RESERVATION_PROPERTY = "meterline_reservation"
AggregationOf = Callable[[int, str], Aggregation]
EventKey = tuple[int, str, int]  # (tenant_id, event id, UTC day index): the ledger's identity


@dataclass
class Batch:
    """Decoded records of one micro-batch. `ends[p]` is the offset after p's last record."""

    events: dict[int, list[UsageEvent]] = field(default_factory=dict)
    poison: list[DeadLetter] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)
    records: int = 0

    @property
    def partitions(self) -> list[int]:
        return sorted(self.ends)

    def all_events(self) -> list[UsageEvent]:
        return [e for p in self.partitions for e in self.events.get(p, [])]


def decode_batch(records: Sequence[Record], topic: str) -> Batch:
    """Decode every record; those that can never be processed become dead letters."""
    batch = Batch(records=len(records))
    for r in records:
        batch.ends[r.partition] = max(batch.ends.get(r.partition, 0), r.offset + 1)
        try:
            event = decode_event(r.value)
        except PoisonMessage as exc:
            batch.poison.append(
                DeadLetter(r.key, r.value, exc.reason, topic, r.partition, r.offset)
            )
            continue
        batch.events.setdefault(r.partition, []).append(event)
    return batch


def event_key(e: UsageEvent) -> EventKey:
    return (e.tenant_id, e.id, e.timestamp_ms // DAY_MS)


def first_of_each(events: Iterable[UsageEvent]) -> list[UsageEvent]:
    """The first event of each ledger identity, in order (later copies are duplicates)."""
    seen: set[EventKey] = set()
    out: list[UsageEvent] = []
    for e in events:
        k = event_key(e)
        if k not in seen:
            seen.add(k)
            out.append(e)
    return out


def to_deltas(events: Iterable[UsageEvent], aggregation_of: AggregationOf) -> list[Delta]:
    """Fold counted events into one delta per (tenant, customer, meter, minute of event time)."""
    acc: dict[tuple[int, str, str, int], list[float]] = {}
    aggs: dict[tuple[int, str], Aggregation] = {}
    for e in events:
        agg = aggs.get((e.tenant_id, e.meter))
        if agg is None:
            agg = aggs[(e.tenant_id, e.meter)] = aggregation_of(e.tenant_id, e.meter)
        minute = e.timestamp_ms - e.timestamp_ms % MINUTE_MS
        key = (e.tenant_id, e.customer, e.meter, minute)
        value = 1.0 if agg is Aggregation.COUNT else e.value
        cur = acc.get(key)
        if cur is None:
            acc[key] = [value, 1, e.timestamp_ms]
        else:
            _fold_into(cur, agg, value, e.timestamp_ms)
    return [
        Delta(t, c, m, aggs[(t, m)], minute, v, int(n), int(ts))
        for (t, c, m, minute), (v, n, ts) in acc.items()
    ]


def _fold_into(cur: list[float], agg: Aggregation, value: float, ts: int) -> None:
    if agg is Aggregation.MAX:
        cur[0] = max(cur[0], value)
    elif agg is Aggregation.LATEST:
        if (ts, value) > (cur[2], cur[0]):
            cur[0] = value
    else:
        cur[0] += value
    cur[1] += 1
    cur[2] = max(cur[2], ts)


def reservations(events: Iterable[UsageEvent]) -> list[ReservationKey]:
    """Counted events that an entitlement check granted through a reservation."""
    return [
        ReservationKey(e.tenant_id, e.customer, e.meter, e.id)
        for e in events
        if e.properties and e.properties.get(RESERVATION_PROPERTY) is True
    ]
