"""The oracle's run: a tenant with every pricing kind, its customers in Stripe (the emulator) and
Postgres, their stories played in time order, and the figures of the run.

Usage goes through the aggregator's own writer (`LedgerWriter`: ledger rows, minute rollups,
offsets), received at its simulated time; pushes run hourly at hh:05 and at each period end
(the scheduler's flush), some of them in a child process that SIGKILLs itself after a Stripe
answer; the emulator answers 429s and 500s on meter-event calls; plan changes and
cancellations go to Stripe at their moment and reach Postgres when their webhook does; the
first period of each customer is closed (invoiced and finalized) an hour after it ends, as
Stripe does.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from psycopg_pool import ConnectionPool

from aggregator.batch import Batch
from aggregator.decoding import Events
from aggregator.postgres.ledger import LedgerWriter, prepare
from meterline.catalog.model import Aggregation
from meterline.catalog.parse import parse_catalog
from meterline.catalog.repository import PostgresCatalogRepository
from meterline.clock import FakeClock
from meterline.events import UsageEvent
from meterline.postgres import connect, open_pool
from meterline.stripe.catalog_sync import CatalogSync
from meterline.stripe.postgres import PostgresStripeObjectRepository
from reporter.service import Reporter
from tests.reporter.oracle.calculator import ceil_minute
from tests.reporter.oracle.stories import (
    GRACE,
    PRICES,
    Story,
    add_events,
    draw,
    learned_after_a_later_slot,
)
from tests.reporter.support import reporter_for, settings_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
METER = "api_calls"
HOUR = timedelta(hours=1)
CHILD = "tests.reporter.oracle.push_child"


def catalog_document() -> dict[str, Any]:
    """One meter; a plan per pricing kind, each allowing usage past its (free) limit."""
    plans: list[dict[str, Any]] = [{"key": "free", "default": True, "features": {}}]
    for key, price in PRICES.items():
        limit = int(price.get("included", 0)) or 1_000_000
        plans.append({
            "key": key,
            "metered_prices": {METER: {**price, "currency": "usd"}},
            "features": {METER: {"limit": limit, "reset": "billing_period", "overage": "allow"}},
        })  # fmt: skip
    return {
        "meters": [{"key": METER, "aggregation": "sum"}],
        "features": [{"key": METER, "kind": "metered", "meter": METER}],
        "plans": plans,
    }


@dataclass
class Customer:
    story: Story
    stripe_id: str
    subscription: str
    invoices: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Figures:
    customers: int = 0
    customer_periods: int = 0
    invoices_checked: int = 0
    periods_checked_by_units: int = 0
    events: int = 0
    pushes: int = 0
    kills: int = 0
    stripe_faults: int = 0
    late_webhooks: int = 0
    late_cancels_across_an_end: int = 0  # learned after the slot after the period end went out
    late_changes_across_an_end: int = 0  # the same for plan changes
    faults_injected: int = 0
    faults_found: int = 0


@dataclass
class Sim:
    pool: ConnectionPool
    conninfo: str
    tenant_id: int
    client: Any
    control: Any
    emulator: Any  # the in-process emulator, whose records the fault injection edits
    emulator_url: str
    api_key: str
    clock: FakeClock
    reporter: Reporter
    rng: random.Random
    prices: dict[str, str]  # plan -> Stripe price id
    customers: dict[str, Customer] = field(default_factory=dict)
    pushes: list[datetime] = field(default_factory=list)
    figures: Figures = field(default_factory=Figures)
    writer: LedgerWriter | None = None
    offset: int | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    # -- set-up ---------------------------------------------------------------------------

    @classmethod
    def start(cls, conninfo: str, handle: Any, client: Any, rng: random.Random) -> Sim:
        pool = open_pool(conninfo, max_size=6)
        with pool.connection() as conn:
            tenant_id = conn.execute(
                "INSERT INTO tenants (name) VALUES ('oracle') RETURNING id"
            ).fetchone()[0]
        catalog = parse_catalog(catalog_document())
        PostgresCatalogRepository(pool).apply(tenant_id, catalog)
        objects = PostgresStripeObjectRepository(pool)
        CatalogSync(client, objects).sync(tenant_id, catalog)
        prices = {
            plan: objects.get(tenant_id, "metered_price", f"{plan}/{METER}") for plan in PRICES
        }
        clock = FakeClock(int(handle.control.now() * 1000))
        reporter = reporter_for_pool(pool, client, clock)
        return cls(
            pool, conninfo, tenant_id, client, handle.control, handle.emulator, handle.url,
            handle.api_key,
            clock, reporter, rng, {p: o.stripe_id for p, o in prices.items() if o is not None},
        )  # fmt: skip

    def add_customers(self, n: int) -> None:
        """`n` customers created at their anchors (random seconds within 150 minutes)."""
        start = self.clock.now()
        for story in sorted(draw(self.rng, n), key=lambda s: s.offset):
            self.move_to(start + story.offset)
            self.customers[story.key] = self._customer(story)
        self.figures.customers = n

    def _customer(self, story: Story) -> Customer:
        customer = self.client.v1.customers.create({"email": f"{story.key}@example.com"})
        sub = self.client.v1.subscriptions.create(
            {"customer": customer.id, "items": [{"price": self.prices[story.plan]}]}
        )
        item = sub["items"]["data"][0]
        period = (_utc(item["current_period_start"]), _utc(item["current_period_end"]))
        story.period_start, story.period_end = period
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO customers (tenant_id, id, stripe_customer_id) VALUES (%s, %s, %s)",
                (self.tenant_id, story.key, customer.id),
            )
            conn.execute(
                "INSERT INTO subscriptions (tenant_id, customer, source, plan, status, "
                "stripe_subscription_id, current_period_start, current_period_end, "
                "stripe_event_created) VALUES (%s, %s, 'stripe', %s, 'active', %s, %s, %s, %s)",
                (self.tenant_id, story.key, story.plan, sub.id, *period,
                 int(self.clock.now().timestamp())),
            )  # fmt: skip
        return Customer(story, customer.id, sub.id)

    # -- the timeline ---------------------------------------------------------------------

    def plan_timeline(self) -> list[tuple[datetime, int, str, Any]]:
        """Push times, then every story's events and changes, as time-ordered actions."""
        ends = [c.story.period_end for c in self.customers.values() if c.story.period_end]
        first = min(ends) - timedelta(hours=5, minutes=10)
        last = max(ends) + timedelta(hours=30)
        hour = first.replace(minute=5, second=0, microsecond=0)
        self.pushes = sorted(
            {hour + HOUR * i for i in range(int((last - hour) / HOUR) + 2)}
            | {ceil_minute(e) + timedelta(minutes=3) for e in ends}
        )
        actions: list[tuple[datetime, int, str, Any]] = [(first, 0, "start", None)]
        for c in self.customers.values():
            story = c.story
            assert story.period_end is not None
            add_events(self.rng, story, story.period_end, self.pushes)
            for e in story.events:
                actions.append((e.received, 1, "usage", (story.key, e.ts, e.value)))
            if story.change is not None:
                _, at, delay = story.change
                actions.append((at, 2, "change", story.key))
                actions.append((at + delay, 3, "webhook", story.key))
                self.figures.late_webhooks += delay > HOUR
                across = learned_after_a_later_slot(story, self.pushes)
                self.figures.late_cancels_across_an_end += across and story.canceled
                self.figures.late_changes_across_an_end += across and not story.canceled
            actions.append((story.period_end + GRACE, 5, "close", story.key))
        end = max(a[0] for a in actions) + HOUR
        actions += [(p, 4, "push", None) for p in self.pushes if p <= end]
        self.figures.events = sum(len(c.story.events) for c in self.customers.values())
        return sorted(actions, key=lambda a: (a[0], a[1]))

    def play(self, actions: list[tuple[datetime, int, str, Any]], kills: int) -> None:
        """Every action at its time. Pushes while usage arrives run, at random, in a child
        that SIGKILLs itself after a Stripe answer, until `kills` of them died (a child push
        that had nothing to send, or was spared, passes its turn to the next busy push); the
        emulator fails some meter-event calls meanwhile."""
        received = [a[0] for a in actions if a[2] == "usage"]
        busy = [a for a in actions if a[2] == "push" and min(received) < a[0] <= max(received)]
        chosen = {id(a) for a in self.rng.sample(busy, min(kills, len(busy)))}
        paths = ["/v1/billing/meter_events", "/v1/billing/meter_event_adjustments"]
        seed = self.rng.randrange(1 << 30)
        self.control.set_faults(seed=seed, rate_429=0.08, rate_500=0.03, paths=paths)
        owed = 0
        for action in actions:
            when, _, what, arg = action
            self.move_to(max(when, self.clock.now()))
            if what == "push":
                owed += id(action) in chosen
                crash = owed > 0 and self.figures.kills < kills and when <= max(received)
                killed = self.push(crash)
                owed -= killed
            elif what != "start":
                getattr(self, f"_{what}")(arg)
        self.figures.stripe_faults = len(self.control.faults().get("injected", []))
        self.control.clear_faults()

    def push(self, crash: bool = False) -> bool:
        """One push (in a child when `crash`); True when the child was killed."""
        self.figures.pushes += 1
        if crash and self._child_push():
            return False
        for _ in range(100):  # a killed child's push lock goes with its Postgres session;
            status = self.reporter.push().status  # Stripe failing past the retries leaves
            if status == "ok":  # rows pending: the scheduler's next tick pushes them
                break
            time.sleep(0.05)
        assert status == "ok", status
        return crash

    def _child_push(self) -> bool:
        """A push in a child process that SIGKILLs itself after a Stripe answer with
        probability 0.9; False when it was killed: then the reporter, restarted, pushes at
        once (the scheduler's first tick), resending what the child left pending."""
        done = subprocess.run(
            [sys.executable, "-m", CHILD, self.conninfo, self.emulator_url, self.api_key,
             str(self.clock.now_ms()), str(self.rng.randrange(1 << 30)), "0.9"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode == -9:
            self.figures.kills += 1
            return False
        assert done.returncode == 0, done.stderr[-2000:]
        return True

    def _usage(self, arg: tuple[str, datetime, int]) -> None:
        """One event through the aggregator's writer, received now (simulated time)."""
        key, ts, value = arg
        event = UsageEvent(self.tenant_id, f"evt_{next(self._ids)}", key, METER, value,
                           int(ts.timestamp() * 1000), self.clock.now_ms())  # fmt: skip
        if self.writer is None:
            self.writer = LedgerWriter(lambda: connect(self.conninfo), "oracle", "oracle")
        batch = Batch(events={0: Events.of([event])}, records=1)
        end = (self.offset or 0) + 1
        batch.ends, batch.starts = {0: end}, {0: end - 1}
        self.writer.commit(prepare(batch), {0: self.offset}, lambda _t, _m: Aggregation.SUM)
        self.offset = end

    def _change(self, key: str) -> None:
        c = self.customers[key]
        assert c.story.change is not None
        kind = c.story.change[0]
        if kind == "cancel":
            self.client.v1.subscriptions.cancel(c.subscription)
            return
        item = self.client.v1.subscriptions.retrieve(c.subscription)["items"]["data"][0]["id"]
        self.client.v1.subscriptions.update(
            c.subscription, {"items": [{"id": item, "price": self.prices[kind]}]}
        )

    def _webhook(self, key: str) -> None:
        """What the subscription webhook leaves in Postgres: the change, dated by its event."""
        c = self.customers[key]
        assert c.story.change is not None
        kind, at, _ = c.story.change
        plan, status = (c.story.plan, "canceled") if kind == "cancel" else (kind, "active")
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE subscriptions SET plan = %s, status = %s, stripe_event_created = %s, "
                "updated_at = now() WHERE tenant_id = %s AND customer = %s",
                (plan, status, int(at.timestamp()), self.tenant_id, key),
            )

    def _close(self, key: str) -> None:
        """Stripe invoices the first period (an hour after its end) and moves to the next;
        its webhook brings the new period to Postgres."""
        c = self.customers[key]
        sub = self.client.v1.subscriptions.retrieve(c.subscription)
        if sub["status"] == "canceled":
            return
        c.invoices[1] = self.control.close_period(c.subscription)
        item = self.client.v1.subscriptions.retrieve(c.subscription)["items"]["data"][0]
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE subscriptions SET current_period_start = %s, current_period_end = %s "
                "WHERE tenant_id = %s AND customer = %s",
                (_utc(item["current_period_start"]), _utc(item["current_period_end"]),
                 self.tenant_id, key),
            )  # fmt: skip

    def close_second_periods(self) -> None:
        for c in self.customers.values():
            sub = self.client.v1.subscriptions.retrieve(c.subscription)
            if sub["status"] != "canceled":
                c.invoices[2] = self.control.close_period(c.subscription)
        self.clock.set(datetime.fromtimestamp(self.control.now(), UTC))

    def move_to(self, when: datetime) -> None:
        self.control.advance_clock(max(0.0, when.timestamp() - self.control.now()))
        self.clock.set(when)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.reset()
        self.pool.close()


def reporter_for_pool(pool: ConnectionPool, client: Any, clock: FakeClock) -> Reporter:
    """The reporter of tests/reporter/support.py, on this pool (all it reads of a world)."""
    return reporter_for(SimpleNamespace(pool=pool), client, clock, settings_for())  # type: ignore[arg-type]


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
