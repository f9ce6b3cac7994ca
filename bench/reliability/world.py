"""What every scenario shares: the running stack, its faults, the observer, and the common
steps (a fresh tenant, traffic with chaos beside it, waiting for counting to settle, the verdict).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from bench.loadgen import run_loop
from bench.reliability.faults import Faults
from bench.reliability.ledger import Key, Ledger, Verdict, compare, view_mismatches
from bench.reliability.observe import Observer, view_window, wait_until
from bench.reliability.traffic import Plan, Stats, Traffic
from bench.runner import CATALOG
from meterline.catalog import PostgresCatalogRepository, load_catalog
from meterline.errors import Conflict
from meterline.kafka import ensure_topics
from meterline.postgres import open_pool
from meterline.settings import TOPIC_USAGE
from meterline.tenants import PostgresTenantRepository
from meterline_devstack.stack import DevStack

METERS = ("api_calls", "tokens")


@dataclass
class Tenant:
    id: int
    name: str
    keys: dict[str, str]
    revoked_key: str = ""


@dataclass
class Result:
    """One scenario's figures, as printed."""

    number: int
    name: str
    sent: int = 0
    acked: int = 0
    counted: int = 0
    lost: int = 0
    doubled: int = 0
    recovery_s: float | None = None
    ok: bool = False
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def absorb(self, verdict: Verdict) -> None:
        self.sent, self.acked, self.counted = verdict.sent, verdict.acked, verdict.counted
        self.lost, self.doubled = verdict.lost, verdict.doubled
        self.ok = verdict.ok
        if verdict.unknown:
            self.notes.append(f"{verdict.unknown} counted ids were never sent")
        if verdict.counted_unacked:
            self.notes.append(f"{verdict.counted_unacked} counted ids never got a 202 (allowed)")
        self.notes += verdict.mismatches[:5]


@dataclass
class World:
    stack: DevStack
    faults: Faults
    observer: Observer
    ci: bool = False
    settle_s: float = 120.0
    """How long the rollups may stand still short of the acknowledged events (a stall)."""
    customers: int = 40

    @property
    def ingest(self) -> tuple[str, int]:
        parts = urlsplit(self.stack.urls["ingest"])
        return parts.hostname or "127.0.0.1", parts.port or 80

    def tenant(self, label: str, name: str | None = None) -> Tenant:
        """A new tenant (or tenant `name`, reused if it exists) with the demo catalog, a fresh key
        per scope and one revoked ingest key."""
        name = name or f"rel-{label}-{uuid.uuid4().hex[:6]}"
        with open_pool(self.stack.urls["postgres"], max_size=2) as pool:
            repo = PostgresTenantRepository(pool)
            try:
                tenant_id = repo.create_tenant(name).id
            except Conflict:
                tenant_id = repo.get_tenant(name).id
            keys = {s: repo.create_key(name, [s])[1] for s in ("ingest", "read", "admin")}
            info, revoked = repo.create_key(name, ["ingest"])
            repo.revoke_key(info.id)
            PostgresCatalogRepository(pool).apply(tenant_id, load_catalog(CATALOG))
        return Tenant(tenant_id, name, keys, revoked)

    def fresh_topic(self, label: str) -> str:
        """Point ingest and the aggregator at a new, empty usage topic (both restarted).

        Each scenario gets its own topic (and consumer group) because the embedded broker
        (Tansu 0.6, memory storage) spends time per fetch that grows with the number of record
        batches a partition holds: after a million or so events in ingest's small batches a
        fetch takes seconds, and the aggregator falls behind for good whatever the scenario
        does (this was the scenario-5 "stall" after scenarios 1-4). See
        `devstack/meterline_devstack/broker.py`."""
        suffix = f"{label}-{uuid.uuid4().hex[:6]}"
        topic = f"{TOPIC_USAGE}.{suffix}"
        ensure_topics(self.stack.urls["kafka"], [topic], self.stack.partitions)
        settings = {
            "METERLINE_KAFKA_TOPIC": topic,
            # A new consumer group too: Tansu's coordinator once never completed the join of
            # a group whose only member had just left subscribed to another topic.
            "METERLINE_AGGREGATOR_GROUP_ID": f"meterline-aggregator-{suffix}",
        }
        for name in ("ingest", "aggregator"):
            env = self.faults.proc(name).env
            if env is not None:
                env.update(settings)
                self.faults.restart(name)
        return topic

    def ensure_ready(self, timeout: float = 30.0) -> list[str]:
        """Wait for ingest's and the aggregator's `/readyz`; restart one that stays unready
        (a previous scenario may have left it stuck), so each scenario starts from a working
        stack. Returns a note for each restart."""
        notes = []
        for name in ("ingest", "aggregator"):
            url = self.stack.urls[name] + "/readyz"
            if wait_until(lambda u=url: _ready(u), timeout, 0.5) is None:  # type: ignore[misc]
                self.faults.restart(name)
                notes.append(f"{name} was not ready at the start ({_body(url)}); restarted it")
        return notes

    def ledger(self, tenant: Tenant) -> Ledger:
        customers = [f"cust_{i}" for i in range(self.customers)]
        return Ledger(f"{tenant.name}-{uuid.uuid4().hex[:4]}", customers, METERS)

    def send(
        self,
        tenant: Tenant,
        ledger: Ledger,
        plan: Plan,
        chaos: Callable[[threading.Event], None] | None = None,
        kind: type[Traffic] = Traffic,
    ) -> Stats:
        """Run the traffic (closed loop, or `kind`, e.g. `OpenLoop`); `chaos(done)` runs beside
        it in a thread (`done` is set at the end)."""
        host, port = self.ingest
        traffic = kind(ledger, host, port, tenant.keys["ingest"], plan, seed=tenant.id)
        done = threading.Event()
        thread = threading.Thread(target=chaos, args=(done,), daemon=True) if chaos else None
        if thread:
            thread.start()
        try:
            return run_loop(traffic.run())
        finally:
            done.set()
            if thread:
                thread.join()

    def settle(self, tenant: Tenant, ledger: Ledger) -> float | None:
        """Seconds until the rollups count every acknowledged event and stop moving, or None
        once they stood still for `settle_s` short of that (counting stalled). A slow count
        that keeps moving is waited for: a big scenario takes the aggregator a while."""
        start = last_move = time.monotonic()
        last: int | None = None
        while True:
            now, counted = time.monotonic(), self.observer.counted(tenant.id)
            enough = counted is not None and counted >= ledger.acked_count
            if counted != last:
                last, last_move = counted, now
            elif now - last_move >= (3.0 if enough else self.settle_s):
                return now - start if enough else None
            time.sleep(0.5)

    def verdict(
        self,
        tenant: Tenant,
        ledger: Ledger,
        view_wait: float = 60.0,
        extra: Mapping[str, Mapping[Key, float]] | None = None,
        extra_meters: Mapping[str, Collection[str]] | None = None,
    ) -> Verdict:
        """Compare Postgres, the Redis view (waiting for it to match) and any `extra` views
        (e.g. Stripe, for the meters `extra_meters` names) with the ledger."""
        rollups = self.observer.rollups(tenant.id)
        keys = set(rollups) | {(c, m) for c in ledger.customers for m in ledger.meters}
        now_ms = int(time.time() * 1000)
        start, end = view_window(now_ms - 6 * 3_600_000, now_ms)
        views: dict[str, Mapping[Key, float]] = dict(extra or {})

        def view_matches() -> bool:
            view = self.observer.redis_view(tenant.id, keys, start, end)
            views["redis"] = view or {}
            return view is not None and not view_mismatches("redis", rollups, view)

        wait_until(view_matches, view_wait, 1.0)
        ids = self.observer.ledger_ids(tenant.id)
        return compare(ledger, ids, rollups, views, extra_meters)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _body(url: str) -> str:
    try:
        return httpx.get(url, timeout=2.0).text[:120]
    except httpx.HTTPError as exc:
        return type(exc).__name__


def every(
    progress: Callable[[], int | None],
    step: int,
    going: Callable[[], bool],
    action: Callable[[], None],
    seed: int = 3,
) -> int:
    """Call `action` each time `progress()` (events sent, or counted) passed about `step` more
    (at a random point of each step), while `going()`; returns how many times it ran."""
    rng = random.Random(seed)
    runs = 0
    while going():
        threshold = (runs + 1) * step - rng.randrange(max(1, step // 2))
        while (progress() or 0) < threshold and going():
            time.sleep(0.1)
        if not going():
            break
        action()
        runs += 1
    return runs
