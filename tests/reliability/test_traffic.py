"""The ledger-keeping load generator against a fake ingest that fails on purpose."""

from __future__ import annotations

import asyncio
import random

import orjson

from bench.reliability.ledger import Ledger
from bench.reliability.traffic import Plan, Traffic


async def _flaky_ingest(seen: list[list[str]], seed: int) -> tuple[asyncio.Server, int]:
    """Answers 202, 503 with Retry-After, 500, or drops the connection, at random."""
    rng = random.Random(seed)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            body = orjson.loads(await reader.readexactly(length))
            roll = rng.random()
            if roll < 0.15:
                break
            if roll < 0.3:
                writer.write(b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n")
            elif roll < 0.4:
                writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
            else:
                seen.append([e["id"] for e in body])
                writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_every_batch_is_retried_with_the_same_ids_until_acknowledged() -> None:
    accepted: list[list[str]] = []
    ledger = Ledger("t9-e", ["c0", "c1", "c2"], ["api_calls"])

    async def scenario() -> None:
        server, port = await _flaky_ingest(accepted, seed=5)
        plan = Plan(2_000, batch=50, connections=4, duplicates=0.05, give_up_s=30)
        await Traffic(ledger, "127.0.0.1", port, "key", plan, seed=2).run()
        server.close()

    asyncio.run(scenario())
    acked_ids = {i for batch in accepted for i in batch}
    assert ledger.acked_count == len(ledger) == len(acked_ids)
    assert acked_ids == {ledger.event_id(n) for n in range(len(ledger))}
    assert sum(len(b) for b in accepted) == 2_000
    assert len(ledger) < 2_000  # some sends repeated earlier ids
    assert {"202", "503", "500"} <= set(ledger.outcomes)
    assert all(len(set(b)) == len(b) for b in accepted)  # no id twice in one batch


def test_open_loop_rate_and_duration_stop_the_plan() -> None:
    ledger = Ledger("t8-e", ["c0"], ["api_calls"])

    async def scenario() -> float:
        server, port = await _flaky_ingest([], seed=1)
        plan = Plan(10**9, batch=10, connections=4, rate=2_000, duration_s=0.5)
        stats = await Traffic(ledger, "127.0.0.1", port, "key", plan).run()
        server.close()
        return stats.elapsed

    elapsed = asyncio.run(scenario())
    assert 0 < len(ledger) <= 2_000 * elapsed + 100
