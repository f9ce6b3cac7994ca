"""The pure parts: messages -> events and dead letters, events -> minute deltas (Hypothesis)."""

from __future__ import annotations

import math

import orjson
from confluent_kafka import Message
from hypothesis import event, given, settings
from hypothesis import strategies as st

from aggregator.batch import decode_batch, first_of_each, reservations, to_deltas, unique_events
from aggregator.decoding import Events, decode_columns
from meterline.catalog.aggregation import fold, merge
from meterline.catalog.model import Aggregation
from meterline.events import (
    RESERVATION_PROPERTY,
    PoisonMessage,
    UsageEvent,
    decode_event,
    encode_event,
)
from meterline.view.model import MINUTE_MS

AGGS = {"s": Aggregation.SUM, "c": Aggregation.COUNT, "m": Aggregation.MAX, "l": Aggregation.LATEST}
T0 = 1_790_000_000_000

events_st = st.lists(
    st.builds(
        lambda i, c, m, v, t: UsageEvent(1, f"e{i}", f"c{c}", m, float(v), T0 + t, T0),
        st.integers(0, 30),
        st.integers(0, 2),
        st.sampled_from(list(AGGS)),
        st.integers(0, 50),
        st.integers(0, 5 * MINUTE_MS),
    ),
    max_size=60,
)


def agg_of(_t: int, meter: str) -> Aggregation:
    return AGGS.get(meter, Aggregation.SUM)


@given(events_st)
def test_deltas_equal_a_fold_per_minute(events: list[UsageEvent]) -> None:
    deltas = to_deltas(Events.of(events), agg_of)
    keys = [(d.customer, d.meter, d.minute_ms) for d in deltas]
    assert len(keys) == len(set(keys))
    for d in deltas:
        mine = [
            e
            for e in events
            if (e.customer, e.meter, e.timestamp_ms - e.timestamp_ms % MINUTE_MS)
            == keys[deltas.index(d)]
        ]
        agg = agg_of(1, d.meter)
        values = [(1.0 if agg is Aggregation.COUNT else e.value, e.timestamp_ms) for e in mine]
        assert d.value == fold(agg, values)
        assert d.count == len(mine)
        assert d.latest_ms == max(e.timestamp_ms for e in mine)
    assert sum(d.count for d in deltas) == len(events)


@given(events_st, st.randoms())
def test_splitting_a_batch_and_merging_gives_the_same_rollup(events: list[UsageEvent], rnd) -> None:  # type: ignore[no-untyped-def]
    cut = rnd.randint(0, len(events))
    whole = {
        (d.customer, d.meter, d.minute_ms): (d.value, d.latest_ms)
        for d in to_deltas(Events.of(events), agg_of)
    }
    merged: dict[tuple[str, str, int], tuple[float, int]] = {}
    for part in (events[:cut], events[cut:]):
        for d in to_deltas(Events.of(part), agg_of):
            key = (d.customer, d.meter, d.minute_ms)
            merged[key] = merge(d.aggregation, merged.get(key), (d.value, d.latest_ms))
    assert merged == whole


def firsts(events: list[UsageEvent]) -> list[UsageEvent]:
    cols = Events.of(events)
    return cols.select(first_of_each(cols.identities(), set())).rows()


@given(events_st)
def test_first_of_each_keeps_one_per_identity_in_order(events: list[UsageEvent]) -> None:
    out = firsts(events + events)
    assert out == firsts(events)
    assert len({(e.tenant_id, e.id) for e in out}) == len(out)


def message(partition: int, offset: int, value: bytes | None, key: bytes | None = b"k") -> Message:
    return Message(topic="topic", partition=partition, offset=offset, key=key, value=value)


def test_decode_splits_poison_and_tracks_ends() -> None:
    good = UsageEvent(1, "a", "c", "m", 1.0, T0, T0, {RESERVATION_PROPERTY: True})
    messages = [
        message(0, 5, encode_event(good)),
        message(0, 6, b"nope"),
        message(2, 9, None, key=None),
        message(1, 3, encode_event(good)),
    ]
    batch = decode_batch(messages, "topic")
    assert {p: es.rows() for p, es in batch.events.items()} == {0: [good], 1: [good], 2: []}
    assert batch.ends == {0: 7, 1: 4, 2: 10} and batch.records == 4
    assert [(p.source_offset, p.reason.split(":")[0]) for p in batch.poison] == [
        (6, "not JSON"),
        (9, "empty message"),
    ]
    assert [r.event_id for r in reservations(batch.events[0])] == ["a"]
    assert reservations(batch.events[2]) == []


def test_a_poison_message_leaves_the_other_partitions_on_the_fast_path() -> None:
    evs = [UsageEvent(1, f"e{i}", "c", "m", 1.0, T0, T0) for i in range(4)]
    messages = [message(i % 2, i, encode_event(e)) for i, e in enumerate(evs)]
    batch = decode_batch([*messages, message(1, 9, b"[]")], "topic")
    assert batch.events[0].rows() == evs[0::2] and batch.events[1].rows() == evs[1::2]
    assert [(p.source_partition, p.reason) for p in batch.poison] == [(1, "not a JSON object")]


# The fast decode path must agree with `decode_event`: documents near the valid shape, with
# every field sometimes missing, of another type, or out of range.
def _maybe(valid: st.SearchStrategy[object], *odd: object) -> st.SearchStrategy[object]:
    """Mostly `valid`, so that whole documents are often valid; else one of `odd`."""
    return st.one_of(valid, valid, valid, valid, valid, st.sampled_from(odd))


_MISSING = object()
_TEXT = st.text(min_size=1, max_size=128)
docs_st = st.fixed_dictionaries(
    {
        "schema": _maybe(st.just(1), 2, 1.0, True, "1", None, _MISSING),
        "tenant": _maybe(st.integers(1, 10**6), True, 1.5, "1", None, _MISSING),
        "id": _maybe(_TEXT, 7, None, "x" * 129, "", _MISSING),
        "customer": _maybe(_TEXT, 7, None, "y" * 129, "", _MISSING),
        "meter": _maybe(_TEXT, 7, None, "", _MISSING),
        "value": _maybe(
            st.floats(0, 1e15),
            math.nan,
            math.inf,
            -1.0,
            -0.0,
            1e16,
            3,
            True,
            "1",
            None,
            _MISSING,
        ),
        "timestamp": _maybe(st.integers(0, 10**14), True, 1.0, None, _MISSING),
        "received_at": _maybe(st.integers(0, 10**14), False, "0", None, _MISSING),
        "properties": _maybe(
            st.dictionaries(_TEXT, st.integers(-5, 5), max_size=3), [], "p", None, _MISSING
        ),
    }
)


def decoded_alone(data: bytes) -> UsageEvent | None:
    """What the fast path makes of one message: its event, or None (the slow path's turn)."""
    got = decode_columns([data])
    return None if got is None else got.rows()[0]


@settings(max_examples=400)
@given(docs_st)
def test_the_fast_decode_path_agrees_with_decode_event(doc: dict[str, object]) -> None:
    data = orjson.dumps({k: v for k, v in doc.items() if v is not _MISSING})
    fast = decoded_alone(data)
    try:
        slow: UsageEvent | None = decode_event(data)
    except PoisonMessage:
        slow = None
    event("fast path" if fast is not None else "slow path")
    assert fast is None or fast == slow


@settings(max_examples=200)
@given(st.lists(docs_st, min_size=1, max_size=8))
def test_a_run_takes_the_fast_path_only_if_each_of_its_messages_does(
    docs: list[dict[str, object]],
) -> None:
    values = [orjson.dumps({k: v for k, v in d.items() if v is not _MISSING}) for d in docs]
    alone = [decoded_alone(v) for v in values]
    together = decode_columns(values)
    event("fast path" if together is not None else "slow path")
    if together is None:
        assert None in alone
    else:
        assert together.rows() == alone


@given(events_st.filter(bool))
def test_the_fast_decode_path_takes_every_encoded_event(events: list[UsageEvent]) -> None:
    got = decode_columns([encode_event(e) for e in events])
    assert got is not None and got.rows() == events


def test_the_fast_decode_path_leaves_odd_messages_to_decode_event() -> None:
    ok = encode_event(UsageEvent(1, "a", "c", "m", 1.0, 5, 5))
    assert decode_columns([]) is None
    for odd in (None, b"{not json", b"[1]", ok + b" 1"):
        assert decode_columns([ok, odd]) is None
    int_value = b'{"schema":1,"tenant":1,"id":"a","customer":"c","meter":"m","value":3,'
    int_value += b'"timestamp":5,"received_at":5}'
    assert decode_columns([ok, int_value]) is None
    assert decode_event(int_value).value == 3.0
    for text in ("", "x" * 129, "tab\there", "del\x7f", "nul\x00"):
        bad = UsageEvent(1, text, "c", "m", 1.0, 5, 5)
        assert decode_columns([ok, encode_event(bad)]) is None
    escaped = b'{"schema":1,"tenant":1,"id":"\\u0001","customer":"c","meter":"m","value":1.0,'
    escaped += b'"timestamp":5,"received_at":5}'
    assert decode_columns([ok, escaped]) is None  # a control character written as an escape
    quoted = encode_event(UsageEvent(1, 'say "hi" \\ bye', "c", "m", 1.0, 5, 5))
    assert b"\\" in quoted  # escapes of other characters still take the fast path
    got = decode_columns([ok, quoted])
    assert got is not None and got.id == ["a", 'say "hi" \\ bye']
    for value in (-1.0, 1e16, math.nan, math.inf):
        assert decode_columns([ok, ok.replace(b'"value":1.0', f'"value":{value}'.encode())]) is None


@given(events_st)
def test_first_of_each_with_and_without_copies_matches_a_plain_loop(
    events: list[UsageEvent],
) -> None:
    seen: set[tuple[int, str]] = set()
    plain = []
    for e in events + events[:3]:
        key = (e.tenant_id, e.id)
        if key not in seen:
            seen.add(key)
            plain.append(e)
    assert firsts(events + events[:3]) == plain


spread_st = st.lists(
    st.builds(
        lambda t, i, day, p: (p, UsageEvent(t, f"e{i}", "c", "m", 1.0, T0 + day * 86_400_000, T0)),
        st.integers(1, 2),
        st.integers(0, 6),
        st.integers(0, 2),
        st.integers(0, 2),
    ),
    max_size=20,
)


@given(spread_st)
def test_unique_events_keeps_the_first_of_each_identity_across_partitions_and_days(
    placed: list[tuple[int, UsageEvent]],
) -> None:
    # An identity is (tenant, id), whatever the day of the event time: a retry stamped after
    # midnight is a copy of the first event.
    by_part: dict[int, list[UsageEvent]] = {p: [] for p in range(3)}
    for p, e in placed:
        by_part[p].append(e)
    seen: set[tuple[int, str]] = set()
    plain: dict[int, list[UsageEvent]] = {}
    for p, evs in by_part.items():
        plain[p] = []
        for e in evs:
            key = (e.tenant_id, e.id)
            if key not in seen:
                seen.add(key)
                plain[p].append(e)
    got = unique_events({p: Events.of(evs) for p, evs in by_part.items()})
    assert {p: es.rows() for p, es in got.items()} == plain


@given(events_st, st.integers(0, 3))
def test_days_are_the_utc_days_of_the_event_times(events: list[UsageEvent], later: int) -> None:
    cols = Events.of(events)
    cols.ts_ms[:1] = [t + later * 86_400_000 for t in cols.ts_ms[:1]]
    assert cols.days() == {t // 86_400_000 for t in cols.ts_ms}
