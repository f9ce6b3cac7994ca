"""The pure steps of a batch: records in, events and dead letters out, then minute deltas.

Nothing here does I/O, so every rule is tested with plain values (and Hypothesis).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from meterline.catalog.model import Aggregation
from meterline.events import (
    MAX_ID_LEN,
    MAX_VALUE,
    SCHEMA_VERSION,
    PoisonMessage,
    UsageEvent,
    decode_event,
)
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
    ends, events = batch.ends, batch.events
    for r in records:
        if r.offset >= ends.get(r.partition, 0):
            ends[r.partition] = r.offset + 1
        event = decode_well_formed(r.value)
        if event is None:
            try:
                event = decode_event(r.value)
            except PoisonMessage as exc:
                batch.poison.append(
                    DeadLetter(r.key, r.value, exc.reason, topic, r.partition, r.offset)
                )
                continue
        events.setdefault(r.partition, []).append(event)
    return batch


def decode_well_formed(data: bytes | None) -> UsageEvent | None:
    """The fast path of `decode_event` for messages exactly as `encode_event` writes them.

    Returns the same event as `decode_event`, or `None` when the message needs its full checks:
    anything unusual (an integer value, a missing field, a poison message) takes the slow path,
    which also names the reason of a poison message. It never accepts what `decode_event`
    refuses: exact types, lengths and ranges are checked (NaN and infinities fail the range)."""
    if data is None:
        return None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or doc.get("schema") != SCHEMA_VERSION:
        return None
    try:
        eid, customer, meter, value = doc["id"], doc["customer"], doc["meter"], doc["value"]
        tenant, ts, received = doc["tenant"], doc["timestamp"], doc["received_at"]
    except KeyError:
        return None
    props = doc.get("properties")
    if (
        type(eid) is str
        and type(customer) is str
        and type(meter) is str
        and 0 < len(eid) <= MAX_ID_LEN
        and 0 < len(customer) <= MAX_ID_LEN
        and 0 < len(meter) <= MAX_ID_LEN
        and eid.isprintable()
        and customer.isprintable()
        and meter.isprintable()
        and type(value) is float
        and 0.0 <= value <= MAX_VALUE
        and type(tenant) is int
        and type(ts) is int
        and type(received) is int
        and (props is None or type(props) is dict)
    ):
        return UsageEvent(tenant, eid, customer, meter, value, ts, received, props)
    return None


def event_key(e: UsageEvent) -> EventKey:
    return (e.tenant_id, e.id, e.timestamp_ms // DAY_MS)


def first_of_each(events: Sequence[UsageEvent]) -> list[UsageEvent]:
    """The first event of each ledger identity, in order (later copies are duplicates).

    Always a new list. Batches without copies (the usual case) are recognised with one set."""
    keys = [(e.tenant_id, e.id, e.timestamp_ms // DAY_MS) for e in events]
    if len(set(keys)) == len(keys):
        return list(events)
    seen: set[EventKey] = set()
    out: list[UsageEvent] = []
    for k, e in zip(keys, events, strict=True):
        if k not in seen:
            seen.add(k)
            out.append(e)
    return out


def to_deltas(events: Iterable[UsageEvent], aggregation_of: AggregationOf) -> list[Delta]:
    """Fold counted events into one delta per (tenant, customer, meter, minute of event time).

    Events are folded in order, so sums come out bit for bit as a plain left fold would."""
    acc: dict[tuple[int, str, str, int], list[float]] = {}
    aggs: dict[tuple[int, str], Aggregation] = {}
    for e in events:
        ts = e.timestamp_ms
        key = (e.tenant_id, e.customer, e.meter, ts - ts % MINUTE_MS)
        cur = acc.get(key)
        if cur is None:
            agg = aggs.get((e.tenant_id, e.meter))
            if agg is None:
                agg = aggs[(e.tenant_id, e.meter)] = aggregation_of(e.tenant_id, e.meter)
            acc[key] = [1.0 if agg is Aggregation.COUNT else e.value, 1, ts, _CODE[agg]]
        else:
            _fold_into(cur, e.value, ts)
    return [
        Delta(t, c, m, aggs[(t, m)], minute, v, int(n), int(ts))
        for (t, c, m, minute), (v, n, ts, _) in acc.items()
    ]


# The fold of each aggregation, as a number stored in the accumulator (floats only, for mypy).
_SUM, _COUNT, _MAX, _LATEST = 0.0, 1.0, 2.0, 3.0
_CODE = {
    Aggregation.SUM: _SUM,
    Aggregation.COUNT: _COUNT,
    Aggregation.MAX: _MAX,
    Aggregation.LATEST: _LATEST,
}


def _fold_into(cur: list[float], value: float, ts: int) -> None:
    """Fold one event into an accumulator `[value, count, latest_ms, fold code]`."""
    code = cur[3]
    if code == _SUM:
        cur[0] += value
    elif code == _COUNT:
        cur[0] += 1.0
    elif code == _MAX:
        if value > cur[0]:
            cur[0] = value
    elif (ts, value) > (cur[2], cur[0]):
        cur[0] = value
    cur[1] += 1
    if ts > cur[2]:
        cur[2] = ts


def reservations(events: Iterable[UsageEvent]) -> list[ReservationKey]:
    """Counted events that an entitlement check granted through a reservation."""
    return [
        ReservationKey(e.tenant_id, e.customer, e.meter, e.id)
        for e in events
        if e.properties and e.properties.get(RESERVATION_PROPERTY) is True
    ]
