"""Open loop: arrivals never wait for 429s; refused batches honour Retry-After."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
import pytest

from bench.loadgen import Client
from bench.reliability.ledger import Ledger
from bench.reliability.openloop import ConnectionPool, OpenLoop
from bench.reliability.scenarios import answer_times
from bench.reliability.traffic import Plan

RETRY_AFTER = 2


@dataclass
class Seen:
    """What the fake ingest saw: each request's ids and arrival time, per batch the gap
    between a 429 and its next attempt, and per retry connection (one whose first request was
    a resend) the gap between a 429 and the next request on it."""

    requests: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    gaps_after_429: list[float] = field(default_factory=list)
    retry_connection_gaps: list[float] = field(default_factory=list)
    refused: Counter[tuple[str, ...]] = field(default_factory=Counter)
    refused_at: dict[tuple[str, ...], float] = field(default_factory=dict)


async def _refusing_ingest(
    seen: Seen, delay: float = 0.0, retry_after: float = RETRY_AFTER
) -> tuple[asyncio.Server, int]:
    """Answers 429 with `retry_after` to each batch's first two attempts, then 202, each answer
    `delay` seconds after the request."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        retry_connection: bool | None = None
        refused_at: float | None = None
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            now = time.monotonic()
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            ids = tuple(e["id"] for e in orjson.loads(await reader.readexactly(length)))
            if retry_connection is None:
                retry_connection = ids in seen.refused
            if retry_connection and refused_at is not None:
                seen.retry_connection_gaps.append(now - refused_at)
            seen.requests.append((now, ids))
            if ids in seen.refused_at:
                seen.gaps_after_429.append(now - seen.refused_at.pop(ids))
            await asyncio.sleep(delay)
            if seen.refused[ids] >= 2:
                writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
            else:
                seen.refused[ids] += 1
                seen.refused_at[ids] = refused_at = time.monotonic()
                writer.write(
                    b"HTTP/1.1 429 Busy\r\nRetry-After: %s\r\nContent-Length: 0\r\n\r\n"
                    % str(retry_after).encode()
                )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _run(
    seen: Seen, ledger: Ledger, plan: Plan, delay: float = 0.0, retry_after: float = RETRY_AFTER
) -> OpenLoop:
    async def scenario() -> OpenLoop:
        server, port = await _refusing_ingest(seen, delay, retry_after)
        traffic = OpenLoop(ledger, "127.0.0.1", port, "key", plan)
        await traffic.run()
        server.close()
        return traffic

    return asyncio.run(scenario())


def test_new_batches_keep_arriving_while_ingest_refuses() -> None:
    seen, ledger = Seen(), Ledger("ol-e", ["c0", "c1"], ["api_calls"])
    plan = Plan(400, batch=10, connections=100, rate=800, max_retry_wait_s=0.5)
    traffic = _run(seen, ledger, plan)

    firsts = {ids: at for at, ids in reversed(seen.requests)}
    first_retry = min(at for at, ids in seen.requests if firsts[ids] != at)
    # Every batch was first offered before any refused batch came back: 429s held back nothing.
    assert len(firsts) == 40
    assert max(firsts.values()) < first_retry
    # ...and each was then resent with the same ids until acknowledged.
    assert len(seen.requests) == 120
    assert ledger.acked_count == len(ledger) == 400
    assert ledger.outcomes == {"429": 80, "202": 40}
    # A refused batch is resent no sooner than its Retry-After (asyncio timers never fire
    # early; a little slack for the clock's resolution).
    assert len(seen.gaps_after_429) == 80
    assert min(seen.gaps_after_429) >= RETRY_AFTER - 0.01
    assert traffic.stats.connections <= 100
    assert traffic.stats.offered_rate > 0
    assert traffic.stats.retry_after_missing == 0


def test_arrivals_wait_for_a_connection_once_all_are_busy() -> None:
    seen, ledger = Seen(), Ledger("ol-f", ["c0"], ["api_calls"])
    plan = Plan(60, batch=10, connections=2, rate=10_000, max_retry_wait_s=0.1)
    traffic = _run(seen, ledger, plan, delay=0.3)

    assert traffic.stats.connections == 2
    # With both connections waiting for an answer, the third batch cannot be first offered
    # before one of them is answered (0.3 s after its request).
    firsts = sorted({ids: at for at, ids in reversed(seen.requests)}.values())
    assert firsts[2] - firsts[0] >= 0.3 - 0.01
    # ...and the time new batches waited for a connection is counted: batches 3 and 5 each wait
    # for an answer (0.3 s); 4 and 6 find the other connection, freed at the same moment.
    assert 2 * 0.3 - 0.05 <= traffic.stats.connection_wait_s < 3 * 0.3
    assert ledger.acked_count == len(ledger) == 60
    # Every answer took the server's 0.3 s, refusals (two per batch) and acceptances alike.
    answers = traffic.stats.answer_s
    assert (len(answers["429"]), len(answers["202"])) == (12, 6)
    assert min(min(answers["429"]), min(answers["202"])) >= 0.3 - 0.01
    assert answer_times(traffic.stats).startswith("answers in s (p50/p99/max): 202 0.3")


def test_a_connection_is_free_for_new_arrivals_as_soon_as_it_is_answered() -> None:
    seen, ledger = Seen(), Ledger("ol-g", ["c0"], ["api_calls"])
    plan = Plan(40, batch=10, connections=1, rate=10_000, max_retry_wait_s=0.1)
    _run(seen, ledger, plan)

    # One arrival connection, every first attempt refused with a 2 s Retry-After: the four
    # batches were still all offered before the first of them could be resent.
    firsts = {ids: at for at, ids in reversed(seen.requests)}
    first_retry = min(at for at, ids in seen.requests if firsts[ids] != at)
    assert len(firsts) == 4
    assert max(firsts.values()) < first_retry
    assert ledger.acked_count == len(ledger) == 40


def test_pool_hands_a_released_connection_to_the_longest_waiter() -> None:
    async def scenario() -> list[str]:
        pool = ConnectionPool("127.0.0.1", 1, 1.0, limit=1, hold=False)
        only = await pool.acquire()
        order: list[str] = []

        async def take(name: str) -> None:
            client = await pool.acquire()
            order.append(name)
            pool.release(client)

        waiters = [asyncio.create_task(take(n)) for n in ("first", "second")]
        await asyncio.sleep(0)
        pool.release(only)
        await asyncio.gather(*waiters)
        assert isinstance(only, Client) and pool.opened == 1
        return order

    assert asyncio.run(scenario()) == ["first", "second"]


def test_an_open_loop_needs_a_rate() -> None:
    with pytest.raises(ValueError, match="rate"):
        OpenLoop(Ledger("x", ["c"], ["m"]), "127.0.0.1", 1, "key", Plan(10))


def test_a_retry_connection_sends_nothing_for_the_retry_after() -> None:
    seen, ledger = Seen(), Ledger("ol-h", ["c0"], ["api_calls"])
    plan = Plan(200, batch=10, connections=16, rate=10_000, max_retry_wait_s=0.01)
    _run(seen, ledger, plan, retry_after=0.3)

    # Each batch's second attempt (a resend) is refused too: its retry connection then stays
    # silent for the Retry-After, though other refused batches are due and waiting for one.
    assert len(seen.retry_connection_gaps) >= 10
    assert min(seen.retry_connection_gaps) >= 0.3 - 0.01
    assert ledger.acked_count == len(ledger) == 200


def test_the_plans_batches_are_composed_before_they_arrive() -> None:
    ledger = Ledger("ol-c", ["c0"], ["api_calls"])
    window = Plan(10**9, batch=10, connections=4, rate=1_000, duration_s=0.25)
    arrivals = OpenLoop(ledger, "127.0.0.1", 1, "key", window)._arrivals()
    assert [len(numbers) for numbers, _ in arrivals] == [10] * 25  # rate x duration
    assert len(ledger) == 250
    numbers, raw = arrivals[-1]
    assert raw.startswith(b"POST /v1/events HTTP/1.1\r\n")
    assert orjson.loads(raw.split(b"\r\n\r\n", 1)[1]) == [ledger.event(n) for n in numbers]
    fewer = Plan(25, batch=10, connections=4, rate=1_000, duration_s=60)
    arrivals = OpenLoop(ledger, "127.0.0.1", 1, "key", fewer)._arrivals()
    assert [len(numbers) for numbers, _ in arrivals] == [10, 10, 5]  # plan.events
