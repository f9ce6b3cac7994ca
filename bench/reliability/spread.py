"""Traffic spread over several generator processes, for loads one Python process cannot offer.

One generator is one event loop on one core: composing 500-event batches and handling their
answers, it offered at most ~245-265k new events/s on the reference machine, short of 3x the
pipeline's capacity there (scenario 7). `send_spread` runs the plan in `processes` processes
(spawned, so none inherits the suite's threads), each with its share of the rate, events and
connections and a ledger of its own (a prefix of its own, so no two processes issue the same
id); at the end the caller's ledger absorbs theirs and the statistics are added up. The
processes start sending at one agreed time, after every one of them has started, so their
offered rates add up over one window.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from bench.loadgen import run_loop
from bench.reliability.ledger import Ledger
from bench.reliability.traffic import Plan, Stats, Traffic

START_DELAY_S = 5.0
"""From the call to the agreed start: a spawned process imports the suite in 1-2 s."""


def send_spread(
    kind: type[Traffic],
    ledger: Ledger,
    address: tuple[str, int],
    api_key: str,
    plan: Plan,
    processes: int,
    seed: int,
) -> Stats:
    """Run `plan` as `kind` traffic split over `processes` processes; `ledger` absorbs what
    each sent. Returns the statistics of all of them together."""
    parts = [
        replace(
            plan,
            events=plan.events // processes + (i < plan.events % processes),
            rate=plan.rate / processes if plan.rate else None,
            connections=max(1, plan.connections // processes),
        )
        for i in range(processes)
    ]
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + START_DELAY_S
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [
            pool.submit(
                _send,
                kind,
                Ledger(f"{ledger.prefix}p{i}", ledger.customers, ledger.meters),
                address,
                api_key,
                part,
                seed + i,
                start_at,
            )
            for i, part in enumerate(parts)
        ]
        results = [f.result() for f in futures]
    for part_ledger, _ in results:
        ledger.absorb(part_ledger)
    return added([stats for _, stats in results])


def _send(
    kind: type[Traffic],
    ledger: Ledger,
    address: tuple[str, int],
    api_key: str,
    plan: Plan,
    seed: int,
    start_at: float,
) -> tuple[Ledger, Stats]:
    """In a generator process: run the traffic from `start_at` (epoch seconds); return its
    ledger and statistics."""
    traffic = kind(ledger, *address, api_key, plan, seed=seed)
    time.sleep(max(0.0, start_at - time.time()))
    return ledger, run_loop(traffic.run())


def added(parts: list[Stats]) -> Stats:
    """The statistics of traffic sent by several generators at once: rates, counts and CPU
    shares add up; the elapsed time is the longest."""
    total = Stats()
    for s in parts:
        total.elapsed = max(total.elapsed, s.elapsed)
        total.cpu_share += s.cpu_share
        total.ack_latencies += s.ack_latencies
        total.rejected += s.rejected
        total.gave_up += s.gave_up
        total.retry_after_missing += s.retry_after_missing
        total.offered_rate += s.offered_rate
        total.connections += s.connections
        total.connection_wait_s += s.connection_wait_s
    return total
