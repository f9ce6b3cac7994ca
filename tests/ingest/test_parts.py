"""Pure parts of ingest: body limits and decoding, CloudEvents mapping, token buckets, sinks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ingest.body import Format, body_format, decode, read_limited
from ingest.cloudevents import to_native
from ingest.ratelimit import TokenBuckets
from ingest.sinks import AdmissionSink, DedupingSink, MemorySink, Outcome, Sink
from meterline.dedupe import MemoryDeduper
from meterline.errors import (
    PayloadTooLarge,
    TooManyRequests,
    UnsupportedMediaType,
    ValidationFailed,
)
from meterline.events import EncodedEvents, UsageEvent
from meterline.tenants import Principal

ACME = Principal(1, "acme", "key_1", frozenset({"ingest"}))


def _batch(*ids: str) -> EncodedEvents:
    return EncodedEvents.of(UsageEvent(1, i, "c", "api_calls", 1.0, 1, 1) for i in ids)


def test_the_body_limit_stops_reading_at_the_first_chunk_past_it() -> None:
    read: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(100):
            read.append(i)
            yield b"x" * 1000

    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_limited(chunks(), 2500))
    assert read == [0, 1, 2]
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_limited(chunks(), 2500, content_length="999999"))
    assert len(read) == 3


def test_media_types() -> None:
    assert body_format("application/json; charset=utf-8") is Format.JSON
    assert body_format("Application/X-NDJSON") is Format.NDJSON
    assert body_format("application/cloudevents-batch+json") is Format.CLOUDEVENTS_BATCH
    for bad in (None, "", "text/csv", "multipart/form-data"):
        with pytest.raises(UnsupportedMediaType):
            body_format(bad)


def test_decode_reports_bad_ndjson_lines_and_batch_limits() -> None:
    assert decode(b'{"a": 1}', Format.JSON, 10) == ([{"a": 1}], False)
    assert decode(b"[1, 2]", Format.JSON, 10) == ([1, 2], True)
    with pytest.raises(ValidationFailed) as bad:
        decode(b'{"a": 1}\n\n{nope\n{"b": 2}\n[', Format.NDJSON, 10)
    assert [e.index for e in bad.value.errors] == [1, 3]
    with pytest.raises(PayloadTooLarge):
        decode(b"[1, 2, 3]", Format.JSON, 2)
    with pytest.raises(ValidationFailed):
        decode(b"[]", Format.JSON, 2)
    with pytest.raises(ValidationFailed):
        decode(b"{}", Format.CLOUDEVENTS_BATCH, 2)


def test_cloudevents_mapping_uses_the_meters_value_property() -> None:
    ce = {
        "specversion": "1.0",
        "id": "1",
        "source": "s",
        "type": "tokens",
        "subject": "c",
        "time": "2026-01-01T00:00:00Z",
        "data": {"total": 7, "value": 3, "model": "m"},
    }
    assert to_native(ce, {"tokens": "total"}, 0) == {
        "id": "1",
        "customer": "c",
        "meter": "tokens",
        "timestamp": "2026-01-01T00:00:00Z",
        "value": 7,
        "properties": {"value": 3, "model": "m"},
    }
    assert to_native({**ce, "data": {"value": 3}}, {"tokens": "total"}, 0)["value"] == 3
    assert "value" not in to_native({**ce, "data": None}, {}, 0)
    assert to_native({**ce, "data": 2.5}, {}, 0)["value"] == 2.5
    errors = to_native({"type": "t", "specversion": "0.3"}, {}, 4)
    assert isinstance(errors, list)
    assert {(e.index, e.field) for e in errors} == {(4, "id"), (4, "source"), (4, "specversion")}


def test_token_buckets_allow_debt_then_ask_to_wait() -> None:
    now = [0.0]
    buckets = TokenBuckets(100, {"slow": 10}, now=lambda: now[0])
    slow = Principal(2, "slow", "k", frozenset())
    take = lambda p, n: asyncio.run(buckets.take(p, n))  # noqa: E731
    assert take(ACME, 100) == 0
    assert take(ACME, 1) > 0
    now[0] = 0.5
    assert take(ACME, 1) == 0
    assert take(slow, 1000) == 0
    wait = take(slow, 1)
    assert 99 < wait < 101


class _Slow(Sink):
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def submit(self, principal: Principal, events: object) -> Outcome:
        await self.release.wait()
        return Outcome(len(events), 0)  # type: ignore[arg-type]


def test_admission_bounds_events_in_flight() -> None:
    async def scenario() -> None:
        inner = _Slow()
        sink = AdmissionSink(inner, 1000)
        first = asyncio.create_task(sink.submit(ACME, _batch(*map(str, range(900)))))
        await asyncio.sleep(0)
        with pytest.raises(TooManyRequests):
            await sink.submit(ACME, _batch(*map(str, range(200))))
        inner.release.set()
        assert (await first).accepted == 900
        assert sink.in_flight == 0

    asyncio.run(scenario())


def test_dedupe_marks_only_after_acceptance_and_counts_duplicates() -> None:
    class Failing(Sink):
        async def submit(self, principal: Principal, events: object) -> Outcome:
            raise TooManyRequests("full")

    async def scenario() -> None:
        deduper = MemoryDeduper()
        with pytest.raises(TooManyRequests):
            await DedupingSink(Failing(), deduper).submit(ACME, _batch("a"))
        memory = MemorySink()
        sink = DedupingSink(memory, deduper)
        assert await sink.submit(ACME, _batch("a", "b", "a")) == Outcome(2, 1)
        assert await sink.submit(ACME, _batch("b", "c")) == Outcome(1, 1)
        assert [e.id for e in memory.events] == ["a", "b", "c"]
        assert await deduper.seen(ACME.tenant_id, ["a", "b", "c", "d"]) == [True] * 3 + [False]
        assert await sink.submit(ACME, _batch("c", "a", "c")) == Outcome(0, 3)
        assert len(memory.events) == 3

    asyncio.run(scenario())


def test_a_failing_deduper_lets_events_through() -> None:
    class Broken(MemoryDeduper):
        async def seen(self, tenant_id: int, ids: object) -> list[bool]:
            raise ConnectionError("redis down")

    errors: list[BaseException] = []
    memory = MemorySink()
    sink = DedupingSink(memory, Broken(), on_error=errors.append)
    assert asyncio.run(sink.submit(ACME, _batch("a"))) == Outcome(1, 0)
    assert len(errors) == 1 and len(memory.events) == 1
