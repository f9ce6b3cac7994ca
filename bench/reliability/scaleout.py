"""Scale-out: two replicas of every service on one broker, Postgres and Redis.

Two ingest, two aggregators (one consumer group on a 4-partition topic), two entitlements APIs
and two reporters run as processes of their own, on a database, topic and Redis key prefix
of their own. In order:
1. load: events for billed customers (in hours that have ended, so the reporter pushes them)
   sent to both ingest replicas, resent until acknowledged; one aggregator is SIGKILLed
   halfway. Every acknowledged event must be counted once: 0 lost, 0 double-counted
   (the ledger, and the minute rollups' counts and sums per customer);
   and the Kafka group's committed offsets equal the positions in Postgres (what KEDA reads);
2. limits across replicas: a consume on entitlements A uses a free customer's limit up; a
   plain check on B, whose caches would keep the old answer for 30 s, must refuse within
   100 ms, and a consume on B is refused; an admin grant made through A is in B's answer
   within 100 ms;
3. one scheduler: exactly one reporter has pushed, and Stripe holds what Postgres counted;
   then the active reporter is SIGKILLed right after more usage is sent: the other takes the
   schedule over (within 30 s) and pushes it, and no meter event identifier reaches Stripe
   twice.

`tests/reliability/test_scaleout.py` runs it reduced in `make test`; `python -m bench.reliability
--scenario 10` (`make reliability`) runs it at full size; figures in bench/HISTORY.md.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.reliability.replicas import Replica, stop_all
from bench.reliability.scaleout_parts import (
    FULL,
    PARTITIONS,
    REDUCED,
    Backing,
    Figures,
    Size,
    fresh_backing,
    http_client,
    post_until_accepted,
    start_all,
    wait_for,
)
from bench.reliability.stripe_check import _SUBSCRIBE, BILLED_PLAN
from bench.reliability.world import Result, World
from bench.runner import CATALOG
from meterline.catalog import PostgresCatalogRepository, load_catalog
from meterline.entitlements.postgres import PostgresCustomerRepository
from meterline.kafka.admin import group_offsets
from meterline.postgres import open_pool
from meterline.postgres.offsets import stored_positions
from meterline.settings import EMULATOR_API_KEY, StripeSettings
from meterline.stripe.catalog_sync import CatalogSync, apply_and_sync
from meterline.stripe.client import stripe_client
from meterline.stripe.postgres import PostgresStripeObjectRepository
from meterline.stripe.subscriptions import ensure_stripe_customer
from meterline.tenants import PostgresTenantRepository
from stripe_emulator import EmulatorControl

CACHED_S = "30"
FREE_CUSTOMER = "free-001"
FREE_LIMIT = 50  # the example catalog's free plan: api_calls, 50 a week, blocked beyond
CHECK = "/v1/customers/{}/entitlements/api_calls"
PUSHES = "meterline_reporter_push_runs_total"
ACTIVE = "meterline_reporter_scheduler_active"


@dataclass
class Setup:
    tenant_id: int
    keys: dict[str, str]
    billed: list[str]
    event_name: str


class ScaleOut:
    def __init__(self, backing: Backing, logs: Path, size: Size) -> None:
        self.backing, self.logs, self.size = backing, logs, size
        self.figures = Figures()
        self._killed: list[Replica] = []

    def run(self) -> Figures:
        setup = self._prepare()
        env = self._env()
        made = {
            kind: [Replica(kind, f"{kind}-{n}", env, self.logs) for n in "ab"]
            for kind in ("aggregator", "ingest", "entitlements_api", "reporter")
        }
        everyone = [r for group in made.values() for r in group]
        try:
            start_all(everyone)
            self._load(setup, made["ingest"], made["aggregator"])
            self._limits(setup, made["entitlements_api"])
            self._reporters(setup, made["ingest"], made["reporter"])
        finally:
            self._note_deaths(everyone)
            stop_all(everyone)
        return self.figures

    def _note_deaths(self, replicas: list[Replica]) -> None:
        """Name each replica that exited without being killed, with its last log lines."""
        for r in replicas:
            if not r.alive() and r not in self._killed:
                self.figures.notes.append(f"{r.name} exited: {r.process.tail(5)}")

    def _env(self) -> dict[str, str]:
        return {
            **self.backing.env(),
            "METERLINE_AGGREGATOR_BATCH_MS": "50",
            "METERLINE_ENTITLEMENTS_DECISION_CACHE_TTL": CACHED_S,
            "METERLINE_ENTITLEMENTS_PLAN_CACHE_TTL": CACHED_S,
            "METERLINE_REPORTER_TICK_S": "0.5",
            "METERLINE_REPORTER_PUSH_INTERVAL_S": "10",
            "METERLINE_REPORTER_STRIPE_LAG_S": "0",
        }

    # -- set-up ------------------------------------------------------------------------------

    def _prepare(self) -> Setup:
        b = self.backing
        client = stripe_client(StripeSettings(api_base=b.stripe_url, api_key=b.stripe_key))
        billed = [f"billed-{i:03d}" for i in range(self.size.customers)]
        with open_pool(b.database_url, max_size=2) as pool:
            tenants = PostgresTenantRepository(pool)
            tenant_id = tenants.create_tenant("scaleout").id
            keys = {s: tenants.create_key("scaleout", [s])[1] for s in ("ingest", "read", "admin")}
            keys["app"] = tenants.create_key("scaleout", ["read", "ingest"])[1]
            sync = CatalogSync(client, PostgresStripeObjectRepository(pool))
            apply_and_sync(PostgresCatalogRepository(pool), sync, tenant_id, load_catalog(CATALOG))
            repo = PostgresCustomerRepository(pool)
            for customer in billed:
                repo.create(tenant_id, customer, None, None)
                ensure_stripe_customer(client, repo, tenant_id, customer)
            with pool.connection() as conn:
                conn.execute(_SUBSCRIBE, (tenant_id, BILLED_PLAN, tenant_id))
                row = conn.execute(
                    "SELECT event_name FROM stripe_objects WHERE tenant_id = %s "
                    "AND kind = 'meter' AND key = 'api_calls'",
                    (tenant_id,),
                ).fetchone()
            repo.create(tenant_id, FREE_CUSTOMER, None, None)  # on the default (free) plan
        assert row is not None, "the catalog sync made no Stripe meter for api_calls"
        return Setup(tenant_id, keys, billed, str(row[0]))

    # -- 1. load, with an aggregator SIGKILLed -------------------------------------------------

    def _load(self, setup: Setup, ingest: list[Replica], aggregators: list[Replica]) -> None:
        f, size = self.figures, self.size
        expected: Counter[str] = Counter()
        batches = []
        for start in range(0, size.events, size.batch):
            batch = [
                self._event(setup, i) for i in range(start, min(size.events, start + size.batch))
            ]
            for e in batch:
                expected[e["customer"]] += e["value"]
            batches.append(batch)
        sent = [0]
        lock = threading.Lock()

        def send(n: int) -> None:
            post_until_accepted(ingest[n % 2], setup.keys["ingest"], batches[n])
            with lock:
                sent[0] += 1
                if sent[0] == len(batches) // 2:
                    self._killed.append(aggregators[0])
                    aggregators[0].kill()

        began = time.monotonic()
        with ThreadPoolExecutor(size.senders) as pool:
            list(pool.map(send, range(len(batches))))
        f.load_s = time.monotonic() - began
        f.sent = size.events
        f.notes.append("aggregator-a SIGKILLed halfway through the load")
        counted = self._wait_counted(setup.tenant_id, size.events, timeout=120 + size.events / 2000)
        f.settle_s = time.monotonic() - began - f.load_s
        self._compare(setup.tenant_id, counted, expected)
        f.group_behind = wait_for(self._group_behind, lambda n: n == 0, timeout=20)

    def _group_behind(self) -> int:
        """How many partitions' offsets in the Kafka group differ from Postgres's positions
        (what lag monitors and KEDA would get wrong)."""
        b, group, partitions = self.backing, self.backing.group, range(PARTITIONS)
        with open_pool(b.database_url, max_size=1) as pool:
            stored = {s.partition: s.next_offset for s in stored_positions(pool, group, b.topic)}
        shown = group_offsets(b.kafka, group, b.topic, list(partitions))
        return sum(1 for p in partitions if stored.get(p) is None or shown.get(p) != stored[p])

    def _event(self, setup: Setup, i: int) -> dict[str, Any]:
        hours_ago = 1 + i % 3  # in hours that have ended: the reporter pushes them
        when = datetime.now(UTC).replace(minute=7, second=0, microsecond=0)
        when -= timedelta(hours=hours_ago)
        return {
            "id": f"so-{i:09d}",
            "customer": setup.billed[i % len(setup.billed)],
            "meter": "api_calls",
            "value": 1 + i % 5,
            "timestamp": when.isoformat().replace("+00:00", "Z"),
        }

    def _wait_counted(self, tenant_id: int, n: int, timeout: float) -> int:
        """The ledger's count once it reached `n` (and a second more, so that anything counted
        twice would show), or when `timeout` passed."""
        wait_for(lambda: self._ledger(tenant_id), lambda c: c >= n, timeout)
        time.sleep(1.0)
        return self._ledger(tenant_id)

    def _ledger(self, tenant_id: int) -> int:
        with psycopg.connect(self.backing.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM usage_events WHERE tenant_id = %s", (tenant_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def _compare(self, tenant_id: int, counted: int, expected: Counter[str]) -> None:
        f = self.figures
        f.counted = counted
        f.lost = max(0, f.sent - counted)
        with psycopg.connect(self.backing.database_url) as conn:
            rows = conn.execute(
                "SELECT customer, sum(count), sum(value)::float8 FROM usage_rollups_minute "
                "WHERE tenant_id = %s AND meter = 'api_calls' GROUP BY customer",
                (tenant_id,),
            ).fetchall()
        in_rollups = sum(int(n) for _, n, _ in rows)
        f.doubled = max(0, counted - f.sent) + max(0, in_rollups - f.sent)
        totals = {c: v for c, _, v in rows}
        f.wrong_totals = sum(1 for c, v in expected.items() if totals.get(c) != float(v))

    # -- 2. limits across entitlements replicas ----------------------------------------------

    def _limits(self, setup: Setup, replicas: list[Replica]) -> None:
        a, b = replicas
        key, customer = setup.keys["app"], FREE_CUSTOMER
        with http_client(a, key) as on_a, http_client(b, key) as on_b:
            before = on_b.get(CHECK.format(customer)).json()  # cached on b for 30 s
            if before.get("remaining") != FREE_LIMIT:
                self.figures.notes.append(f"unexpected first check on B: {before}")
            body = {"amount": FREE_LIMIT, "event_id": "so-consume-1"}
            used = on_a.post(CHECK.format(customer) + "/consume", json=body)
            if used.status_code != 200:
                self.figures.notes.append(f"consume on A: {used.status_code} {used.text[:200]}")
                return
            began = time.monotonic()
            refused = wait_for(
                lambda: on_b.get(CHECK.format(customer)).json()["has_access"],
                lambda has: has is False,
                timeout=5,
            )
            if refused is False:
                self.figures.refused_on_b_ms = round((time.monotonic() - began) * 1000, 1)
            body = {"amount": 1, "event_id": "so-consume-2"}
            self.figures.consume_on_b = on_b.post(
                CHECK.format(customer) + "/consume", json=body
            ).status_code
        self._grant(setup, a, b, customer)

    def _grant(self, setup: Setup, a: Replica, b: Replica, customer: str) -> None:
        """An admin grant made through A is in B's answer within 100 ms."""
        grant = {"feature": "api_calls", "kind": "top_up", "amount": 10}
        with (
            http_client(a, setup.keys["admin"]) as admin,
            http_client(b, setup.keys["read"]) as on_b,
        ):
            before = on_b.get(CHECK.format(customer)).json()  # cached on b
            if before.get("limit") != FREE_LIMIT:
                self.figures.notes.append(f"unexpected check on B before the grant: {before}")
            added = admin.post(f"/v1/admin/customers/{customer}/grants", json=grant)
            if added.status_code != 201:
                self.figures.notes.append(f"grant on A: {added.status_code} {added.text[:200]}")
                return
            began = time.monotonic()
            limit = FREE_LIMIT + 10
            seen = wait_for(
                lambda: on_b.get(CHECK.format(customer)).json()["limit"],
                lambda found: found == limit,
                timeout=5,
            )
            if seen == limit:
                self.figures.grant_on_b_ms = round((time.monotonic() - began) * 1000, 1)

    # -- 3. one reporter scheduler, failover --------------------------------------------------

    def _reporters(self, setup: Setup, ingest: list[Replica], reporters: list[Replica]) -> None:
        f = self.figures
        stripe_equal = self._stripe_equals_postgres(setup)
        if not wait_for(stripe_equal, bool, timeout=90):
            f.notes.append("Stripe did not reach Postgres's totals before the handover")
            return
        f.pushing_replicas = sum(1 for r in reporters if r.metric(PUSHES) > 0)
        active = [r for r in reporters if r.metric(ACTIVE) == 1]
        if len(active) != 1:
            f.notes.append(f"{len(active)} reporters active")
            return
        (leader,) = active
        (standby,) = [r for r in reporters if r is not leader]
        late = [self._event(setup, self.size.events + i) for i in range(len(setup.billed))]
        for e in late:
            e["timestamp"] = e["timestamp"].replace(":07:", ":31:")  # new minutes, same hours
        post_until_accepted(ingest[0], setup.keys["ingest"], late)
        # counted before the kill, so the next leader's first push carries them
        self._wait_counted(setup.tenant_id, self.size.events + len(late), timeout=60)
        killed = time.monotonic()
        self._killed.append(leader)
        leader.kill()
        if wait_for(lambda: standby.metric(PUSHES), lambda n: n > 0, timeout=30):
            f.handover_s = time.monotonic() - killed
        f.stripe_equal = bool(wait_for(stripe_equal, bool, timeout=90))
        sent = Counter(self._identifiers(setup.event_name))
        f.pushed_twice = sum(1 for n in sent.values() if n > 1)
        f.notes.append(f"{sum(sent.values())} meter events sent to Stripe")

    def _stripe_equals_postgres(self, setup: Setup) -> Callable[[], bool]:
        def check() -> bool:
            with EmulatorControl(self.backing.stripe_url) as control:
                events = control.meter_events(event_name=setup.event_name, status="accepted")
            in_stripe = sum(float(e["value"]) for e in events)
            with psycopg.connect(self.backing.database_url) as conn:
                row = conn.execute(
                    "SELECT coalesce(sum(value), 0)::float8 FROM usage_rollups_minute "
                    "WHERE tenant_id = %s AND meter = 'api_calls' AND customer LIKE 'billed-%%'",
                    (setup.tenant_id,),
                ).fetchone()
            return row is not None and in_stripe == row[0] > 0

        return check

    def _identifiers(self, event_name: str) -> list[str]:
        with EmulatorControl(self.backing.stripe_url) as control:
            requests = control.requests(path="/v1/billing/meter_events")
        params = [r.get("params") or {} for r in requests]
        return [p["identifier"] for p in params if p.get("event_name") == event_name]


def scale_out(world: World) -> Result:
    """10: scale-out: 2 ingest, 2 aggregators (4 partitions), 2 entitlements, 2 reporters."""
    result = Result(9, "scale-out, 2 of each")
    urls = world.stack.urls
    if "stripe" not in urls:
        result.notes.append("needs the Stripe emulator (the reporters push to it)")
        return result
    size = REDUCED if world.ci else FULL
    logs = world.stack.home / "logs" / "scaleout"
    with fresh_backing(
        urls["postgres"], urls["kafka"], urls["redis"], urls["stripe"], EMULATOR_API_KEY
    ) as backing:
        figures = ScaleOut(backing, logs, size).run()
    result.sent = result.acked = figures.sent
    result.counted, result.lost, result.doubled = figures.counted, figures.lost, figures.doubled
    result.recovery_s = figures.handover_s
    result.ok = figures.ok
    result.notes += figures.lines()
    return result
