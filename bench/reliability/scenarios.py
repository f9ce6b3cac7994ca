"""Scenarios 1-7 of the reliability suite (8, the fuzzing, is in `fuzz.py`).

Each scenario gets its own tenant, sends traffic through the ledger-keeping load generator with
its fault injected beside it, waits for counting to settle, and compares Postgres and the Redis
view with the ledger. Sizes are the issue's in a full run and reduced with `ci`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.loadgen import percentile
from bench.reliability import stripe_check
from bench.reliability.ledger import Ledger
from bench.reliability.observe import wait_until
from bench.reliability.openloop import OpenLoop
from bench.reliability.sampler import Sampler
from bench.reliability.traffic import Plan, Stats
from bench.reliability.world import Result, Tenant, World, every


@dataclass(frozen=True)
class Size:
    full: int
    ci: int

    def pick(self, world: World) -> int:
        return self.ci if world.ci else self.full


class Recovery:
    """Times from each fault's start until ingest acknowledged and the rollups grew again."""

    def __init__(self, world: World, tenant: Tenant, ledger: Ledger) -> None:
        self.world, self.tenant, self.ledger = world, tenant, ledger
        self.times: list[float] = []

    def around(self, fault: Callable[[], None], done: threading.Event) -> None:
        start = time.monotonic()
        fault()
        ended = time.monotonic()
        before = self.world.observer.counted(self.tenant.id) or 0

        def recovered() -> bool:
            acked = self.ledger.last_ack > ended or done.is_set()
            counted = self.world.observer.counted(self.tenant.id)
            if counted is None:
                return False
            caught_up = done.is_set() and counted >= self.ledger.acked_count
            return acked and (counted > before or caught_up)

        took = wait_until(recovered, 120.0, 0.2)
        if took is not None:
            self.times.append(ended - start + took)

    @property
    def worst(self) -> float | None:
        return max(self.times) if self.times else None


def _finish(
    world: World,
    result: Result,
    tenant: Tenant,
    ledger: Ledger,
    stats: Stats,
    stripe_hours: int = 0,
) -> Result:
    """Settle, compare (with Stripe too when `stripe_hours`), and describe the responses."""
    if world.settle(tenant, ledger) is None:
        result.notes.append(
            f"rollups stood still for {world.settle_s:.0f} s short of the acknowledged events"
        )
    extra, meters = {}, {"stripe": stripe_check.BILLED_METERS}
    if stripe_hours:
        result.notes.append("stripe: " + stripe_check.push(world.stack).splitlines()[-1])
        extra["stripe"] = stripe_check.totals(world.stack, tenant.id, stripe_hours + 1)
        result.notes.append(f"stripe: {len(extra['stripe'])} (customer, meter) totals compared")
    result.absorb(world.verdict(tenant, ledger, extra=extra, extra_meters=meters))
    result.notes.append(_outcomes(ledger, stats))
    if stats.gave_up or stats.rejected:
        result.notes.append(f"gave up on {stats.gave_up} batches; rejected: {stats.rejected[:2]}")
    return result


def _outcomes(ledger: Ledger, stats: Stats) -> str:
    shown = ", ".join(f"{k}x{v}" for k, v in sorted(ledger.outcomes.items()))
    rate = ledger.acked_count / stats.elapsed if stats.elapsed else 0.0
    return (
        f"responses {shown}; {rate:,.0f} acked events/s; "
        f"load generator CPU {stats.cpu_share:.0%} of machine"
    )


def duplicates(world: World) -> Result:
    """1: 1,000,000 events, 5% of them resent ids (immediate and delayed)."""
    result, tenant = Result(1, "duplicates 5%"), world.tenant("dup")
    ledger = world.ledger(tenant)
    hours = 2 if stripe_check.available(world.stack) else 0
    if hours:
        stripe_check.prepare(world.stack, tenant.id, ledger.customers)
        result.notes.append("event times in the 2 hours before this one, so the reporter pushes")
    else:
        result.notes.append("stripe: not compared (no reporter jobs or no Stripe emulator)")
    plan = Plan(Size(1_000_000, 30_000).pick(world), duplicates=0.05, past_hours=hours)
    stats = world.send(tenant, ledger, plan)
    result.notes.append(f"{ledger.sends - len(ledger):,} duplicate sends incl. retries")
    return _finish(world, result, tenant, ledger, stats, stripe_hours=hours)


def _killing(
    world: World, number: int, name: str, service: str, size: Size, step: Size, by_count: bool
) -> Result:
    """Kill `service` every `step` events: sent ones, or counted ones (`by_count`), the latter
    going on through the backlog after the traffic ended."""
    result, tenant = Result(number, name), world.tenant(service)
    ledger = world.ledger(tenant)
    recovery = Recovery(world, tenant, ledger)
    if not world.faults.has(service):
        result.notes.append(f"{service} is not running")
        return result

    def progress() -> int | None:
        return world.observer.counted(tenant.id) if by_count else len(ledger)

    def chaos(done: threading.Event) -> None:
        def going() -> bool:
            if not done.is_set():
                return True
            return by_count and (world.observer.counted(tenant.id) or 0) < ledger.acked_count

        kills = every(progress, step.pick(world), going, lambda: recovery.around(kill, done))
        result.notes.append(f"{kills} SIGKILLs of {service}")

    def kill() -> None:
        world.faults.kill(service)

    stats = world.send(tenant, ledger, Plan(size.pick(world), connections=12), chaos)
    result = _finish(world, result, tenant, ledger, stats)
    result.recovery_s = recovery.worst
    return result


def aggregator_kills(world: World) -> Result:
    """2: the aggregator SIGKILLed every 50,000 counted events, at random points."""
    sizes = Size(300_000, 40_000), Size(50_000, 10_000)
    return _killing(world, 2, "aggregator SIGKILL", "aggregator", *sizes, by_count=True)


def ingest_kills(world: World) -> Result:
    """3: ingest SIGKILLed under load while the clients retry."""
    sizes = Size(200_000, 30_000), Size(50_000, 10_000)
    return _killing(world, 3, "ingest SIGKILL", "ingest", *sizes, by_count=False)


def _one_fault(
    world: World, number: int, name: str, label: str, fault: Callable[[], None], size: Size
) -> tuple[Result, Tenant, Ledger, Stats, Recovery]:
    result, tenant = Result(number, name), world.tenant(label)
    ledger = world.ledger(tenant)
    recovery = Recovery(world, tenant, ledger)
    total = size.pick(world)

    def chaos(done: threading.Event) -> None:
        wait_until(lambda: len(ledger) >= total // 3 or done.is_set(), 600, 0.05)
        if not done.is_set():
            recovery.around(fault, done)

    stats = world.send(tenant, ledger, Plan(total, connections=12, give_up_s=300), chaos)
    result.recovery_s = recovery.worst
    return result, tenant, ledger, stats, recovery


def broker_pause(world: World) -> Result:
    """4: the broker SIGSTOPped for 15 s, then resumed."""
    fault = lambda: world.faults.pause("kafka", 15.0)  # noqa: E731
    result, tenant, ledger, stats, _ = _one_fault(
        world, 4, "broker SIGSTOP 15 s", "pause", fault, Size(150_000, 30_000)
    )
    return _finish(world, result, tenant, ledger, stats)


def postgres_stop(world: World) -> Result:
    """5: Postgres stopped for 30 s and restarted."""
    fault = lambda: world.faults.stop_for("postgres", 30.0)  # noqa: E731
    result, tenant, ledger, stats, _ = _one_fault(
        world, 5, "Postgres down 30 s", "pgstop", fault, Size(150_000, 30_000)
    )
    return _finish(world, result, tenant, ledger, stats)


def redis_flush(world: World) -> Result:
    """6: Redis flushed at a third of the run and restarted empty at two thirds."""
    redis_url = world.stack.urls["redis"]

    def fault() -> None:
        from meterline.redis import connect

        connect(redis_url).flushall()

    result, tenant = Result(6, "Redis flush + restart"), world.tenant("redis")
    ledger = world.ledger(tenant)
    recovery = Recovery(world, tenant, ledger)
    total = Size(200_000, 30_000).pick(world)

    def chaos(done: threading.Event) -> None:
        for share, action in ((1 / 3, fault), (2 / 3, lambda: world.faults.restart("redis"))):
            wait_until(lambda s=share: len(ledger) >= total * s or done.is_set(), 600, 0.05)  # type: ignore[misc]
            if not done.is_set():
                recovery.around(action, done)

    stats = world.send(tenant, ledger, Plan(total, connections=12), chaos)
    result = _finish(world, result, tenant, ledger, stats)
    result.recovery_s = recovery.worst
    return result


# The tenant of the rate-limit half of scenario 7, named for this run, and the events per second
# ingest admits for it (passed to ingest as METERLINE_INGEST_TENANT_RATES at start).
OVERLOAD_TENANT = f"rel-overload-{uuid.uuid4().hex[:6]}"
OVERLOAD_RATE = 2_000.0
# Scenario 7 must offer at least this multiple of the capacity it measured, or it fails. The
# open loop is planned a little above it, so that scheduling jitter on a loaded machine does
# not leave it a hair short; the ratio actually achieved is what is checked and reported.
OVERLOAD_FACTOR = 3.0
OVERLOAD_PLANNED = 3.1
# Arrival connections of the open loop (plus 1/16 of them for retries), below ingest's 2,048.
# 3,600 (with ingest allowing 4,096) offered no more: 268.7k new events/s = 2.82x, answers up
# to 10 s, and 27 minutes to drain; at 3x ingest's event loop is what limits the intake.
OVERLOAD_CONNECTIONS = 1_800
# Events per request in the capacity half: the SDK's default batch size, which is what an SDK
# under heavy load sends (its buffer holds a full batch at every flush).
OVERLOAD_BATCH = 500


def _overload_plan(rate: float, duration: float, connections: int, batch: int = 100) -> Plan:
    """Open-loop batches of `batch` events at `rate` events/s for `duration` s; a refused batch
    is resent until acknowledged. The client waits 15 s for an answer: ingest promises one (202,
    or 503 when the broker did not acknowledge) within its produce timeout of 10 s, so a client
    timeout means ingest left a request unanswered."""
    return Plan(
        10**9,
        batch=batch,
        connections=connections,
        rate=rate,
        duration_s=duration,
        timeout_s=15,
        give_up_s=900,
        max_retry_wait_s=2,
    )


def overload(world: World) -> Result:
    """7: offered load at 3x capacity: the pipeline's measured capacity, then a tenant's rate
    limit. Bounded memory, 429 with Retry-After, no timeouts, no acknowledged event lost."""
    result, tenant = Result(7, "overload 3x"), world.tenant("over")
    ledger = world.ledger(tenant)
    events = Size(100_000, 20_000).pick(world)
    probe = world.send(tenant, ledger, Plan(events, batch=OVERLOAD_BATCH, connections=12))
    capacity = ledger.acked_count / max(probe.elapsed, 0.001)
    duration = 60.0 if not world.ci else 20.0
    plan = _overload_plan(
        OVERLOAD_PLANNED * capacity, duration, OVERLOAD_CONNECTIONS, OVERLOAD_BATCH
    )
    with _MemoryWatch(world, ("ingest", "aggregator")) as memory, _IngestWatch(world) as inside:
        stats = world.send(tenant, ledger, plan, kind=OpenLoop)
    result.notes.append(
        f"capacity {capacity:,.0f} ev/s (closed loop, 12 connections, {OVERLOAD_BATCH}-event "
        "batches)"
    )
    short = _offered(result, stats, capacity)
    result.notes.append(answer_times(stats))
    result.notes.append(memory.describe())
    result.notes.append(inside.describe())
    result = _finish(world, result, tenant, ledger, stats)
    limited = _rate_limited(world, duration / 2)
    result.lost, result.doubled = result.lost + limited.lost, result.doubled + limited.doubled
    result.notes += limited.notes
    timeouts = ledger.outcomes.get("Timeout", 0)
    result.ok = result.ok and limited.ok and not short
    result.ok = result.ok and not timeouts and not stats.retry_after_missing
    if timeouts or stats.retry_after_missing:
        result.notes.append(f"{timeouts} timeouts, {stats.retry_after_missing} without Retry-After")
    return result


def _offered(result: Result, stats: Stats, capacity: float) -> bool:
    """Note the offered load and its ratio to `capacity`; True when it fell short of 3x."""
    ratio = stats.offered_rate / max(capacity, 0.001)
    result.notes.append(
        f"offered {stats.offered_rate:,.0f} new ev/s = {ratio:.2f}x capacity "
        f"(open loop, {stats.connections:,} connections, batches composed in "
        f"{stats.compose_s:.0f} s before; new batches waited {stats.connection_wait_s:.1f} s in "
        "all for a free one)"
    )
    if ratio < OVERLOAD_FACTOR:
        result.notes.append(f"offered load short of {OVERLOAD_FACTOR:g}x: the scenario fails")
    return ratio < OVERLOAD_FACTOR


def answer_times(stats: Stats) -> str:
    """How long the answers of each outcome took: p50 / p99 / max seconds (an arrival
    connection is held for as long as its answer takes)."""
    parts = [
        f"{outcome} {percentile(times, 0.5):.2f}/{percentile(times, 0.99):.2f}/{max(times):.2f}"
        for outcome, times in sorted(stats.answer_s.items())
    ]
    return "answers in s (p50/p99/max): " + ", ".join(parts)


def _rate_limited(world: World, duration: float) -> Result:
    """A tenant offered 3x its rate limit: it must get 429s with Retry-After and lose nothing."""
    result, tenant = Result(7, "rate limit"), world.tenant("over", OVERLOAD_TENANT)
    ledger = world.ledger(tenant)
    plan = _overload_plan(OVERLOAD_PLANNED * OVERLOAD_RATE, duration, connections=256)
    stats = world.send(tenant, ledger, plan, kind=OpenLoop)
    short = _offered(result, stats, OVERLOAD_RATE)
    result = _finish(world, result, tenant, ledger, stats)
    limited, timeouts = ledger.outcomes.get("429", 0), ledger.outcomes.get("Timeout", 0)
    result.notes[-1] = f"tenant limited to {OVERLOAD_RATE:,.0f} ev/s: " + result.notes[-1]
    result.ok = result.ok and not short
    if not limited or timeouts or stats.retry_after_missing:
        result.ok = False
        result.notes.append(
            f"rate limit: {limited} 429s (want > 0), {timeouts} timeouts, "
            f"{stats.retry_after_missing} 429/503 without Retry-After"
        )
    return result


class _MemoryWatch(Sampler):
    """Peak resident memory of some of the stack's process trees while the block runs. The
    trees are listed once (a listing reads all of /proc) and again only when one of their
    processes is gone."""

    def __init__(self, world: World, names: tuple[str, ...]) -> None:
        super().__init__(every_s=0.5)
        self.world, self.names = world, names
        self._trees: dict[str, list[psutil.Process]] = {}
        self.start = self._rss()
        self.peak: dict[str, float] = {}

    def _rss(self) -> dict[str, float]:
        found = {}
        for name in self.names:
            try:
                found[name] = sum(p.memory_info().rss for p in self._tree(name)) / 2**20
            except psutil.Error:
                self._trees.pop(name, None)
        return found

    def _tree(self, name: str) -> list[psutil.Process]:
        tree = self._trees.get(name)
        if tree is None:
            faults = self.world.faults
            pid = faults.proc(name).pid if faults.has(name) else None
            if not pid:
                return []
            root = psutil.Process(pid)
            tree = self._trees[name] = [root, *root.children(recursive=True)]
        return tree

    def sample(self) -> None:
        for name, mib in self._rss().items():
            self.peak[name] = max(self.peak.get(name, 0.0), mib)

    def describe(self) -> str:
        parts = [
            f"{n} RSS {self.start.get(n, 0):.0f}->{self.peak.get(n, 0):.0f} MiB peak"
            for n in self.names
        ]
        return "; ".join(parts)


WATCHED = (LIMIT, PRODUCE_SUM, PRODUCE_COUNT) = (
    "meterline_ingest_concurrency_limit",
    "meterline_ingest_produce_seconds_sum",
    "meterline_ingest_produce_seconds_count",
)


class _IngestWatch(Sampler):
    """Ingest seen through its `/metrics` while the block runs, to tell why it answers slowly
    under overload: its adaptive concurrency limit (a limit at its floor means produce calls
    took longer than the target), the mean produce time (the broker's acknowledgements), and how
    long `/metrics` itself took to answer (a starved event loop answers everything late)."""

    def __init__(self, world: World) -> None:
        super().__init__(every_s=1.0, join_s=15)
        host, port = world.ingest
        self.url = f"http://{host}:{port}/metrics"
        self._client = httpx.Client(timeout=10)  # one: a client costs an SSL context to make
        self.limits: list[float] = []
        self.answer_s: list[float] = []
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def sample(self) -> None:
        start = time.monotonic()
        try:
            text = self._client.get(self.url).text
        except httpx.HTTPError:
            return
        self.answer_s.append(time.monotonic() - start)
        found = ingest_samples(text)
        if LIMIT in found:
            self.limits.append(found[LIMIT])
        self.first = self.first or found
        self.last = found

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._client.close()

    def describe(self) -> str:
        return describe_ingest(self.limits, self.answer_s, self.first, self.last)


def ingest_samples(text: str) -> dict[str, float]:
    """The WATCHED samples of a Prometheus text page."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in WATCHED
    }


def describe_ingest(
    limits: list[float], answer_s: list[float], first: dict[str, float], last: dict[str, float]
) -> str:
    """One line of what `_IngestWatch` saw."""
    if not answer_s:
        return "ingest /metrics never answered during the overload"
    parts = []
    if limits:
        ordered = sorted(limits)
        parts.append(
            f"concurrency limit {ordered[0]:.0f}-{ordered[-1]:.0f} "
            f"(median {ordered[len(ordered) // 2]:.0f})"
        )
    produced = last.get(PRODUCE_COUNT, 0.0) - first.get(PRODUCE_COUNT, 0.0)
    if produced > 0:
        mean = (last.get(PRODUCE_SUM, 0.0) - first.get(PRODUCE_SUM, 0.0)) / produced
        parts.append(f"produce {mean * 1000:.0f} ms mean")
    parts.append(f"/metrics answered in {max(answer_s):.1f} s at worst")
    return "ingest under overload: " + ", ".join(parts)
