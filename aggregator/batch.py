"""The pure steps of a batch: messages in, events and dead letters out, then minute deltas.

Nothing here does I/O, so every rule is tested with plain values (and Hypothesis). Events travel
as columns (`aggregator.decoding.Events`), never as an object per event.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from itertools import compress

from aggregator.decoding import EventKey, Events, decode_columns
from meterline.catalog.aggregation import RULES, Combine
from meterline.catalog.model import Aggregation
from meterline.events import RESERVATION_PROPERTY, PoisonMessage, decode_event
from meterline.kafka.consumer import Record
from meterline.kafka.dlq import DeadLetter
from meterline.values import MICROS, from_micros, micros
from meterline.view.model import MINUTE_MS, Delta, ReservationKey

AggregationOf = Callable[[int, str], Aggregation]


@dataclass
class Batch:
    """Decoded messages of one micro-batch. `starts[p]` is the offset of p's first message,
    `ends[p]` the offset after its last."""

    events: dict[int, Events] = field(default_factory=dict)
    poison: list[DeadLetter] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)
    starts: dict[int, int] = field(default_factory=dict)
    records: int = 0

    @property
    def partitions(self) -> list[int]:
        return sorted(self.ends)


def decode_batch(messages: Sequence[Record], topic: str) -> Batch:
    """Decode every message; those that can never be processed become dead letters.

    Messages of one partition arrive in offset order, so a partition's last message holds its
    largest offset."""
    parts = list(map(Record.partition, messages))
    last: dict[int, int] = dict(zip(parts, map(Record.offset, messages), strict=True))  # type: ignore[arg-type]  # never None for a consumed message
    batch = Batch(ends={p: o + 1 for p, o in last.items()}, records=len(messages))
    for p in batch.partitions:
        mine = messages if len(last) == 1 else list(compress(messages, map(p.__eq__, parts)))
        batch.starts[p] = mine[0].offset()  # type: ignore[assignment]  # never None here
        events = decode_columns(list(map(Record.value, mine)))
        batch.events[p] = events if events is not None else _one_by_one(mine, topic, batch)
    return batch


def _one_by_one(messages: Sequence[Record], topic: str, batch: Batch) -> Events:
    """The slow path: `decode_event` per message; poison goes to `batch.poison`."""
    events = Events()
    for m in messages:
        try:
            events.append(decode_event(m.value()))
        except PoisonMessage as exc:
            batch.poison.append(
                DeadLetter(m.key(), m.value(), exc.reason, topic, m.partition(), m.offset())  # type: ignore[arg-type]
            )
    return events


def unique_events(events: dict[int, Events]) -> dict[int, Events]:
    """The batch's first copy of each identity (tenant, id), across all its partitions (an id
    can come back under another customer, hence on another partition, and with another time,
    even on another day). Batches without copies (the usual case) are recognised with one set
    and returned as they are."""
    if _distinct(events.values()):
        return events
    seen: set[EventKey] = set()
    return {p: es.select(first_of_each(es.identities(), seen)) for p, es in events.items()}


def _distinct(parts: Collection[Events]) -> bool:
    """True when no two events share an identity (tenant, id). With one tenant (the usual
    batch) a set of the ids tells, without a tuple per event."""
    total = sum(map(len, parts))
    if len(set().union(*(es.tenant for es in parts))) <= 1:
        return len(set().union(*(es.id for es in parts))) == total
    return len(set().union(*(zip(es.tenant, es.id, strict=True) for es in parts))) == total


def first_of_each(keys: Sequence[EventKey], seen: set[EventKey]) -> list[bool]:
    """Which of `keys` are the first of their identity, counting those in `seen` as taken
    (later copies are duplicates); adds the kept ones to `seen`."""
    keep = []
    for k in keys:
        fresh = k not in seen
        if fresh:
            seen.add(k)
        keep.append(fresh)
    return keep


def to_deltas(events: Events, aggregation_of: AggregationOf) -> list[Delta]:
    """Fold counted events into one delta per (tenant, customer, meter, minute of event time).

    Exact: values are added and compared as whole millionths (`meterline.values.micros`,
    computed once per distinct value), and each delta's value is the exact `Decimal`. Sums
    (the usual aggregation) are folded inline; the others through `_fold_into`."""
    minutes = [t - t % MINUTE_MS for t in events.ts_ms]
    keys = zip(events.tenant, events.customer, events.meter, minutes, strict=True)
    in_micros = {v: micros(v) for v in set(events.value)}
    acc: dict[tuple[int, str, str, int], list[int]] = {}
    aggs: dict[tuple[int, str], Aggregation] = {}
    get = acc.get
    for key, value, ts in zip(
        keys, map(in_micros.__getitem__, events.value), events.ts_ms, strict=True
    ):
        cur = get(key)
        if cur is None:
            agg = aggs.get((key[0], key[2]))
            if agg is None:
                agg = aggs[(key[0], key[2])] = aggregation_of(key[0], key[2])
            code = _CODE[agg]
            acc[key] = [MICROS if code == _COUNT else value, 1, ts, code]
        elif cur[3] == _SUM:
            cur[0] += value
            cur[1] += 1
            if ts > cur[2]:
                cur[2] = ts
        else:
            _fold_into(cur, value, ts)
    return [
        Delta(t, c, m, aggs[(t, m)], minute, from_micros(v), n, ts)
        for (t, c, m, minute), (v, n, ts, _) in acc.items()
    ]


# How each aggregation folds (`meterline.catalog.aggregation.RULES`), as a code stored in the
# accumulator: add the value, add one, keep the largest, keep the latest.
_SUM, _COUNT, _MAX, _LATEST = 0, 1, 2, 3
_CODE = {
    aggregation: _COUNT
    if rule.counts_events
    else {Combine.ADD: _SUM, Combine.MAX: _MAX, Combine.LATEST: _LATEST}[rule.over_time]
    for aggregation, rule in RULES.items()
}


def _fold_into(cur: list[int], value: int, ts: int) -> None:
    """Fold one event (`value` in millionths) into an accumulator `[value in millionths,
    count, latest_ms, fold code]`."""
    code = cur[3]
    if code == _SUM:
        cur[0] += value
    elif code == _COUNT:
        cur[0] += MICROS
    elif code == _MAX:
        if value > cur[0]:
            cur[0] = value
    elif (ts, value) > (cur[2], cur[0]):
        cur[0] = value
    cur[1] += 1
    if ts > cur[2]:
        cur[2] = ts


def reservations(events: Events) -> list[ReservationKey]:
    """The reservations of the consumes' events among `events` (a committed batch's: each
    one's identity is counted, by it or by an earlier copy)."""
    props = events.properties
    if not any(props):  # the usual batch: no event has properties
        return []
    return [
        ReservationKey(events.tenant[i], events.customer[i], events.meter[i], events.id[i])
        for i, p in enumerate(props)
        if p and p.get(RESERVATION_PROPERTY) is True
    ]
