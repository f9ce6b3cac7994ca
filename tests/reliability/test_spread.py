"""Traffic spread over generator processes: every process's events reach ingest once per send,
and the caller's ledger ends up holding all of them."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import orjson

from bench.reliability.ledger import Ledger
from bench.reliability.openloop import OpenLoop
from bench.reliability.spread import added, send_spread
from bench.reliability.traffic import Plan, Stats, Traffic


class FakeIngest:
    """Answers 202 to every batch, on its own event loop in a thread (the generators are other
    processes); records the ids it accepted."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    def __enter__(self) -> FakeIngest:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            self.ids.update(e["id"] for e in orjson.loads(await reader.readexactly(length)))
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
        writer.close()


def _ledger() -> Ledger:
    return Ledger("t5-e", ["c0", "c1", "c2"], ["api_calls", "tokens"])


def test_a_closed_loop_spread_over_two_processes_sends_the_plan_once() -> None:
    ledger = _ledger()
    with FakeIngest() as ingest:
        plan = Plan(1_001, batch=50, connections=4)
        stats = send_spread(Traffic, ledger, ("127.0.0.1", ingest.port), "key", plan, 2, 7)
    assert len(ledger) == ledger.acked_count == 1_001
    assert set(ingest.ids) == {ledger.event_id(n) for n in range(len(ledger))}
    assert set(ingest.ids.values()) == {1}
    assert {i.rsplit("-", 1)[0] for i in ingest.ids} == {"t5-ep0", "t5-ep1"}
    assert ledger.outcomes == {"202": 11 + 10}  # 501 and 500 events in batches of up to 50
    assert stats.elapsed > 0


def test_an_open_loop_spread_offers_the_planned_rate_in_all() -> None:
    ledger = _ledger()
    with FakeIngest() as ingest:
        plan = Plan(10**9, batch=10, connections=8, rate=2_000, duration_s=2.0)
        stats = send_spread(OpenLoop, ledger, ("127.0.0.1", ingest.port), "key", plan, 2, 7)
    assert 1_600 <= stats.offered_rate <= 2_200  # each process offered half, in one window
    assert stats.connections <= 8
    assert len(ledger) == ledger.acked_count == sum(ingest.ids.values())


def test_statistics_add_up_and_the_longest_elapsed_counts() -> None:
    one = Stats(elapsed=2.0, cpu_share=0.1, gave_up=1, offered_rate=100.0, connections=3)
    two = Stats(elapsed=3.0, cpu_share=0.2, retry_after_missing=2, offered_rate=50.0)
    total = added([one, two])
    assert (total.elapsed, total.gave_up, total.retry_after_missing) == (3.0, 1, 2)
    assert (total.offered_rate, total.connections) == (150.0, 3)
    assert abs(total.cpu_share - 0.3) < 1e-9
