"""The pure parts: records -> events and dead letters, events -> minute deltas (Hypothesis)."""

from __future__ import annotations

import math

import orjson
from hypothesis import event, given, settings
from hypothesis import strategies as st

from aggregator.batch import (
    decode_batch,
    decode_well_formed,
    event_key,
    first_of_each,
    reservations,
    to_deltas,
)
from meterline.catalog.model import Aggregation
from meterline.events import PoisonMessage, UsageEvent, decode_event, encode_event
from meterline.kafka.consumer import Record
from meterline.view.model import MINUTE_MS, fold, merge

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
    deltas = to_deltas(events, agg_of)
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
        for d in to_deltas(events, agg_of)
    }
    merged: dict[tuple[str, str, int], tuple[float, int]] = {}
    for part in (events[:cut], events[cut:]):
        for d in to_deltas(part, agg_of):
            key = (d.customer, d.meter, d.minute_ms)
            merged[key] = merge(d.aggregation, merged.get(key), (d.value, d.latest_ms))
    assert merged == whole


@given(events_st)
def test_first_of_each_keeps_one_per_identity_in_order(events: list[UsageEvent]) -> None:
    out = first_of_each(events + events)
    assert out == first_of_each(events)
    assert len({(e.id, e.timestamp_ms // 86_400_000) for e in out}) == len(out)


def test_decode_splits_poison_and_tracks_ends() -> None:
    good = UsageEvent(1, "a", "c", "m", 1.0, T0, T0, {"meterline_reservation": True})
    records = [
        Record(0, 5, b"k", encode_event(good), 0),
        Record(0, 6, b"k", b"nope", 0),
        Record(2, 9, None, None, 0),
    ]
    batch = decode_batch(records, "topic")
    assert batch.events == {0: [good]} and batch.ends == {0: 7, 2: 10}
    assert [(p.source_offset, p.reason.split(":")[0]) for p in batch.poison] == [
        (6, "not JSON"),
        (9, "empty message"),
    ]
    assert [r.event_id for r in reservations(batch.all_events())] == ["a"]


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


@settings(max_examples=400)
@given(docs_st)
def test_the_fast_decode_path_agrees_with_decode_event(doc: dict[str, object]) -> None:
    data = orjson.dumps({k: v for k, v in doc.items() if v is not _MISSING})
    fast = decode_well_formed(data)
    try:
        slow: UsageEvent | None = decode_event(data)
    except PoisonMessage:
        slow = None
    event("fast path" if fast is not None else "slow path")
    assert fast is None or fast == slow


@given(events_st)
def test_the_fast_decode_path_takes_every_encoded_event(events: list[UsageEvent]) -> None:
    for e in events:
        assert decode_well_formed(encode_event(e)) == e


def test_the_fast_decode_path_leaves_odd_messages_to_decode_event() -> None:
    assert decode_well_formed(None) is None
    assert decode_well_formed(b"{not json") is None
    assert decode_well_formed(b"[1]") is None
    int_value = b'{"schema":1,"tenant":1,"id":"a","customer":"c","meter":"m","value":3,'
    int_value += b'"timestamp":5,"received_at":5}'
    assert decode_well_formed(int_value) is None
    assert decode_event(int_value).value == 3.0


@given(events_st)
def test_first_of_each_with_and_without_copies_matches_a_plain_loop(
    events: list[UsageEvent],
) -> None:
    seen: set[tuple[int, str, int]] = set()
    plain = []
    for e in events + events[:3]:
        if event_key(e) not in seen:
            seen.add(event_key(e))
            plain.append(e)
    assert first_of_each(events + events[:3]) == plain
