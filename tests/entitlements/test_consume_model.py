"""A seeded model of the whole pipeline, checked after every step by an independent oracle
(`model_oracle.py`, which shares no code with Meterline).

It drives the real services: the entitlements API and ingest (in process, on one clock the
model moves), the aggregator (a subprocess it SIGKILLs and restarts, sometimes started with
crash hooks so that it dies inside a transaction or between commit and view), Postgres, Redis
and the broker. Four customers have blocking limits over periods of a week, a month and a
year that start and end at random minutes (some end during the run), and one the free plan's
calendar week. Steps, drawn at random: consumes (new ids, retries, ids ingest holds), ingest
events (their own ids, consume's ids, resends, server-stamped times), requests with control
characters and bad amounts (422, nothing recorded), publish timeouts (the consume's fate
unknown until its retry), Redis flushes (rebuilt by the aggregator or by the test), aggregator
kills, clock moves (seconds, to just before a period's end, across midnight with a consume
answered 503 and retried after it).

After every step: what consume granted in each period never passes the limit, and each answer
is the oracle's. Whenever the aggregator runs, the model waits for it to count what was sent:
the ledger then holds exactly the oracle's ids and values, and the API's `used` is the
oracle's total. At the end (the pipeline idle): counted = accepted + granted exactly, each
consume counted at the instant of its first attempt, no pending reservation left, and the
Redis view equal to Postgres (`meterline.view.postgres.verify`).

The aggregator keeps real time: the model's clock moves only the API and ingest, at most two
days ahead, and events are stamped at the model's now (ingest's a couple of minutes back at
most), so the view's minute horizon, which the aggregator and the API compute per day, never
disagrees on a minute that receives events.

Size: METERLINE_MODEL_PIPELINE_SEEDS (comma-separated) x METERLINE_MODEL_PIPELINE_STEPS (a
reduced 1 x 24 in `make test`; `make reliability` runs scenario 9 at full size). With
METERLINE_MODEL_PIPELINE_REPORT set, each run appends its figures there as a JSON line.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from ingest.app import create_server as create_ingest
from ingest.service import Sections
from ingest.service import build as build_ingest
from ingest.settings import IngestSettings
from meterline.catalog import Aggregation, load_catalog
from meterline.clock import from_ms
from meterline.errors import Unavailable
from meterline.events import UsageEvent
from meterline.postgres import open_pool
from meterline.redis import connect as redis_connect
from meterline.settings import DatabaseSettings, KafkaSettings, RedisSettings
from meterline.view import RedisUsageView
from meterline.view.postgres.verify import verify
from tests.aggregator.support import Aggregator
from tests.entitlements.conftest import Api, serve_api
from tests.entitlements.model_oracle import MINUTE_MS, WEEK_MS, Cycle, Oracle, Use, months_later
from tests.entitlements.test_consume_edges import rebuild_view
from tests.fixtures.stripe import StripeEmulatorHandle

pytestmark = pytest.mark.integration
SEEDS = [int(s) for s in os.environ.get("METERLINE_MODEL_PIPELINE_SEEDS", "19").split(",")]
STEPS = int(os.environ.get("METERLINE_MODEL_PIPELINE_STEPS", "24"))
REPORT = os.environ.get("METERLINE_MODEL_PIPELINE_REPORT", "")
DAY_MS = 86_400_000
MAX_AHEAD_MS = 2 * DAY_MS
GUARD_MS = 3_000
CONSUME = "/v1/customers/{c}/entitlements/api_calls/consume"
CATALOG = """
meters:
  - {key: api_calls, aggregation: sum}
features:
  - {key: api_calls, kind: metered, meter: api_calls}
plans:
  - key: free
    default: true
    features:
      api_calls: {limit: 12, reset: week, overage: block}
  - key: capped
    features:
      api_calls: {limit: 15, reset: billing_period, overage: block}
"""
MONDAY_MS = 1_704_067_200_000  # 2024-01-01T00:00Z, a Monday: calendar weeks step from it


class Flaky:
    """The real publisher; when `fail` is set, the next call times out, before or after the
    message went out (both leave its fate unknown to the caller)."""

    def __init__(self, real: Any, rng: random.Random) -> None:
        self.real, self.rng, self.fail = real, rng, False

    def publish(self, events: list[UsageEvent], timeout: float = 10.0) -> None:
        if self.fail:
            self.fail = False
            if self.rng.random() < 0.5:
                self.real.publish(events, timeout)
            raise Unavailable("the broker did not acknowledge in time")
        self.real.publish(events, timeout)


@pytest.fixture
def model_api(api_env: dict[str, str], stripe_emulator: StripeEmulatorHandle) -> Iterator[Api]:
    yield from serve_api(api_env, stripe_emulator, load_catalog(CATALOG))


@pytest.fixture
def model_ingest(model_api: Api) -> Iterator[httpx.Client]:
    """Ingest in process on the API's services and clock."""
    env = model_api.env
    sections = Sections(
        IngestSettings(),
        KafkaSettings(
            bootstrap=env["METERLINE_KAFKA_BOOTSTRAP"], topic=env["METERLINE_KAFKA_TOPIC"]
        ),
        DatabaseSettings(url=env["METERLINE_DATABASE_URL"]),
        RedisSettings(url=env["METERLINE_REDIS_URL"]),
    )
    deps = build_ingest(sections)
    deps.clock = model_api.clock
    with TestClient(create_ingest(deps)) as client:
        client.headers["Authorization"] = f"Bearer {model_api.keys['ingest']}"
        yield client


def iso(ms: int) -> str:
    return from_ms(ms).isoformat().replace("+00:00", "Z")


def draw_cycles(rng: random.Random, now: int) -> dict[str, Cycle]:
    """Billing periods of a week, a month and a year at random minutes (ends on days 1-28, so
    a month from it never clamps), most ending within the clock's reach; and the free plan's
    calendar week."""
    cycles = {"f": Cycle(MONDAY_MS, 12, fixed_ms=WEEK_MS)}
    for name, months, fixed in (("wk", 0, WEEK_MS), ("mo", 1, 0), ("yr", 12, 0)):
        reach = MAX_AHEAD_MS if rng.random() < 0.6 else (fixed or months * 28 * DAY_MS)
        while True:
            end = now + rng.randrange(3 * MINUTE_MS, reach)
            end -= end % MINUTE_MS
            if from_ms(end).day <= 28:
                break
        anchor = end - fixed if fixed else months_later(end, -months)
        cycles[name] = Cycle(anchor, 15, months=months, fixed_ms=fixed)
    return cycles


class Model:
    def __init__(self, api: Api, ingest: httpx.Client, seed: int, log: Path) -> None:
        self.api, self.ingest, self.rng = api, ingest, random.Random(seed)
        self.clock = api.clock
        self.seed, self.log = seed, log
        service: Any = api.deps.service
        self.real = service._publisher
        self.flaky = service._publisher = Flaky(self.real, self.rng)
        self.oracle = Oracle(draw_cycles(self.rng, self.clock.now_ms()))
        self.ids = [f"m{seed}-{n}" for n in range(16 + STEPS // 4)]  # shared, often reused
        self.agg: Aggregator | None = None
        self.down_for = 0
        self.timing: dict[str, float] = {}
        self.reader = api.client()
        self.app = api.client("ingest")
        self.db = psycopg.connect(api.env["METERLINE_DATABASE_URL"], autocommit=True)

    # --- set-up and the aggregator ------------------------------------------------------

    def subscribe(self) -> None:
        with self.api.client("admin") as http:
            for name, cycle in self.oracle.cycles.items():
                http.post("/v1/admin/customers", json={"id": name}).raise_for_status()
                if name == "f":
                    continue
                start, end = cycle.period(self.clock.now_ms())
                body = {"plan": "capped", "current_period_start": iso(start)}
                body["current_period_end"] = iso(end)
                http.put(f"/v1/admin/customers/{name}/subscription", json=body).raise_for_status()

    def start_aggregator(self) -> None:
        hooks = {}
        if self.rng.random() < 0.3:
            hooks["METERLINE_AGGREGATOR_CRASH_AT"] = "inside_txn:0.15,after_commit:0.15"
        self.agg = Aggregator(self.api.env, self.log, METERLINE_AGGREGATOR_BATCH_MS="20", **hooks)
        t0 = time.monotonic()
        self.agg.start()
        self.timing["start"] = self.timing.get("start", 0) + time.monotonic() - t0

    def aggregator_up(self) -> bool:
        return self.agg is not None and self.agg.proc.alive()

    def kill_aggregator(self) -> None:
        assert self.agg is not None
        self.agg.kill()
        self.oracle.lagging = True
        self.oracle.count("aggregator_sigkill")
        self.down_for = self.rng.randint(1, 4)

    # --- the clock -------------------------------------------------------------------

    def boundaries(self) -> list[int]:
        now = self.clock.now_ms()
        return [b for c in self.oracle.cycles.values() for b in c.period(now)]

    def avoid_boundaries(self) -> None:
        """Never act within GUARD_MS of a period boundary: the oracle reads the clock before
        a request, the service during it."""
        for b in self.boundaries():
            gap = b - self.clock.now_ms()
            if -GUARD_MS < gap < GUARD_MS:
                self.clock.advance((gap + GUARD_MS) / 1000)
                self.oracle.count("period_boundary_crossed")

    def move_clock(self) -> None:
        now, ahead = self.clock.now_ms(), self.clock.offset_ms
        roll = self.rng.random()
        if roll < 0.35:
            target = now + self.rng.randrange(1_000, 120_000)
        elif roll < 0.65:
            ends = [b for b in self.boundaries() if b > now + 60_000]
            target = min(ends) - self.rng.randrange(10_000, 40_000) if ends else now
        else:
            target = (now // DAY_MS + 1) * DAY_MS - self.rng.randrange(8_000, 20_000)
        if target - now + ahead > MAX_AHEAD_MS or target <= now:
            target = now + 5_000
        self.clock.advance((target - now) / 1000)
        self.oracle.count("clock_move")
        if roll >= 0.65 and target - now > 5_000:
            self.across_midnight()

    def across_midnight(self) -> None:
        """Just before midnight: a consume answered 503 and an ingest event stamped by ingest,
        then the clock passes midnight and both are sent again."""
        self.avoid_boundaries()
        customer = self.rng.choice(list(self.oracle.cycles))
        event_id = f"mid{self.seed}-{self.oracle.tally.get('midnight', 0)}"
        self.consume(customer, event_id, 1, fail=True)
        value = self.value_of(event_id + "i")
        self.send_ingest(event_id + "i", "f", value, stamped=False)
        self.clock.advance((DAY_MS - self.clock.now_ms() % DAY_MS + 2_000) / 1000)
        self.avoid_boundaries()
        self.oracle.count("midnight")
        self.consume(customer, event_id, 1)
        self.send_ingest(event_id + "i", "f", value, stamped=False)

    # --- requests --------------------------------------------------------------------

    def value_of(self, event_id: str) -> int:
        """One value per id: a resend is the same event."""
        return sum(map(ord, event_id)) % 5 + 1

    def consume(self, customer: str, event_id: str, amount: int, fail: bool = False) -> None:
        lo = self.clock.now_ms()
        self.flaky.fail = fail
        body = {"amount": amount, "event_id": event_id}
        r = self.app.post(CONSUME.format(c=customer), json=body)
        self.flaky.fail = False
        ask = Use(customer, Decimal(amount), lo, self.clock.now_ms(), consume=True)
        body = r.json() if r.status_code != 503 else {}
        self.oracle.on_consume(event_id, ask, r.status_code, body)

    def send_ingest(self, event_id: str, customer: str, value: int, stamped: bool = True) -> None:
        lo = self.clock.now_ms()
        event: dict[str, Any] = {"id": event_id, "customer": customer, "meter": "api_calls"}
        event["value"] = value
        if stamped:
            lo -= self.rng.randrange(0, 120_000)
            lo -= lo % 1000 if self.rng.random() < 0.5 else 0
            event["timestamp"] = iso(lo) if self.rng.random() < 0.5 else lo
        answer = self.ingest.post("/v1/events", json=event)
        assert answer.status_code == 202, answer.text
        use = Use(customer, Decimal(value), lo, lo if stamped else self.clock.now_ms(), False)
        self.oracle.on_ingest(event_id, use, answer.json())

    def bad_input(self) -> None:
        """Control characters in ids and customers, amounts of the wrong type: 422 naming the
        field, and nothing recorded anywhere."""
        bad = self.rng.choice(["a\x01b", "a\nb", "a\x7fb", "tab\there"])
        customer = self.rng.choice(list(self.oracle.cycles))
        cases = [
            (customer, {"amount": 1, "event_id": bad}, "event_id"),
            ("c%01", {"amount": 1, "event_id": "ok-1"}, "customer"),
            (customer, {"amount": "5", "event_id": "ok-2"}, "amount"),
            (customer, {"amount": True, "event_id": "ok-3"}, "amount"),
        ]
        path_customer, body, field = self.rng.choice(cases)
        r = self.app.post(CONSUME.format(c=path_customer), json=body)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
        event = {"id": bad, "customer": customer, "meter": "api_calls", "value": 1}
        r = self.ingest.post("/v1/events", json=[{**event, "id": "fine-1"}, event])
        assert r.status_code == 422 and r.json()["errors"][0]["index"] == 1, r.text
        self.oracle.count("bad_input")

    def flush(self) -> None:
        redis.Redis.from_url(self.api.env["METERLINE_REDIS_URL"]).flushall()
        self.oracle.forget_ingest_marks()
        self.oracle.count("redis_flush")
        if self.rng.random() < 0.5:
            rebuild_view(self.api)  # else the aggregator notices and rebuilds it

    # --- steps and checks ------------------------------------------------------------

    def step(self, n: int) -> None:
        self.avoid_boundaries()
        if self.scheduled(n):
            self.check_limits()
            self.keep_pipeline()
            return
        roll = self.rng.random()
        up = self.aggregator_up()
        if roll < 0.06 and up:
            self.flush()
        elif roll < 0.11 and up:
            self.kill_aggregator()
        elif roll < 0.21:
            self.move_clock()
        elif roll < 0.25:
            self.bad_input()
        elif roll < 0.5:
            event_id = self.rng.choice(self.ids)
            customer = self.rng.choice(list(self.oracle.cycles))
            self.send_ingest(event_id, customer, self.value_of(event_id))
        else:
            customer = self.rng.choice(list(self.oracle.cycles))
            fail = self.rng.random() < 0.12
            self.consume(customer, self.rng.choice(self.ids), self.rng.randint(1, 8), fail)
        self.check_limits()
        self.keep_pipeline()

    def scheduled(self, n: int) -> bool:
        """Whatever the draws, a run of a few dozen steps has a kill, a flush and a midnight."""
        tally, up = self.oracle.tally, self.aggregator_up()
        if n == STEPS // 4 and up and not tally.get("aggregator_sigkill"):
            self.kill_aggregator()
        elif n == STEPS // 2 and not tally.get("midnight"):
            now = self.clock.now_ms()
            self.clock.advance(((now // DAY_MS + 1) * DAY_MS - 15_000 - now) / 1000)
            self.oracle.count("clock_move")
            self.across_midnight()
        elif n == 3 * STEPS // 4 and up and not tally.get("redis_flush"):
            self.flush()
        else:
            return False
        return True

    def keep_pipeline(self) -> None:
        """Restart a killed aggregator after a few steps; settle whenever it runs."""
        if not self.aggregator_up():
            self.down_for -= 1
            if self.down_for > 0:
                return
            self.start_aggregator()
        self.settle()

    def check_limits(self) -> None:
        """Granted never passes the limit, in every period any grant fell in."""
        o = self.oracle
        granted = [i for i, (s, _b) in o.answers.items() if s == 200] + sorted(o.unknown)
        for event_id in granted:
            ask = o.asked[event_id]
            limit = o.cycles[ask.customer].limit
            assert o.granted(ask.customer, ask.lo_ms) <= limit, (ask, limit)

    def settle(self, timeout: float = 90.0) -> None:
        t0 = time.monotonic()
        self._settle(timeout)
        self.timing["settle"] = self.timing.get("settle", 0) + time.monotonic() - t0

    def _settle(self, timeout: float = 90.0) -> None:
        """Wait until the ledger holds exactly what the oracle expects (restarting an
        aggregator that crashed itself) and `used` is the oracle's total for each customer."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.aggregator_up():
                self.oracle.count("aggregator_self_kill")
                self.start_aggregator()
            self.oracle.counting()
            rows = self.ledger()
            o = self.oracle
            expected = {i: (o.asked[i].customer, o.asked[i].value) for i in o.unknown & set(rows)}
            expected.update(o.expected_ledger())
            now = self.clock.now_ms()
            used = {c: self.used(c) for c in self.oracle.cycles}
            wanted = {c: self.oracle.total(c, now) for c in self.oracle.cycles}
            if {i: (c, v) for i, (c, v, _t) in rows.items()} == expected and used == wanted:
                self.timing["loops"] = self.timing.get("loops", 0) + 1
                return
            self.timing["waits"] = self.timing.get("waits", 0) + 1
            diff = sorted(set(rows) ^ set(expected))
            assert time.monotonic() < deadline, (diff, used, wanted)
            time.sleep(0.1)

    def used(self, customer: str) -> Decimal:
        r = self.reader.get(f"/v1/customers/{customer}/entitlements/api_calls")
        return Decimal(str(r.json()["used"]))

    def ledger(self) -> dict[str, tuple[str, Decimal, int]]:
        rows = self.db.execute(
            "SELECT event_id, customer, value::text, (extract(epoch FROM ts) * 1000)::bigint "
            "FROM usage_events"
        ).fetchall()
        return {str(e): (str(c), Decimal(v), int(t)) for e, c, v, t in rows}

    # --- the end ---------------------------------------------------------------------

    def finish(self) -> None:
        """Retry every consume of unknown fate (the client's duty), let the pipeline go idle,
        and check the whole."""
        self.api.deps.service._publisher = self.real  # type: ignore[attr-defined]
        for event_id in sorted(self.oracle.unknown):
            ask = self.oracle.asked[event_id]
            self.consume(ask.customer, event_id, int(ask.value))
        assert not self.oracle.unknown
        if not self.aggregator_up():
            self.start_aggregator()
        self.settle()
        rows = self.ledger()
        for event_id, use in self.oracle.uses.items():
            if use.consume or event_id.startswith("mid"):
                assert use.lo_ms <= rows[event_id][2] <= use.hi_ms, (event_id, use, rows[event_id])
        self.check_idle_view()

    def check_idle_view(self) -> None:
        url = self.api.env["METERLINE_REDIS_URL"]
        view = RedisUsageView(redis_connect(url), "ml")
        for customer in self.oracle.cycles:
            assert view.held_ids(self.api.tenant_id, customer, "api_calls") == set(), customer
        with open_pool(self.api.env["METERLINE_DATABASE_URL"], max_size=2) as pool:
            deadline = time.monotonic() + 30
            while True:
                found = verify(view, pool, lambda _t, _m: Aggregation.SUM, int(time.time() * 1000))
                if not found or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        assert not found, [str(m) for m in found[:5]]

    def close(self) -> None:
        self.api.deps.service._publisher = self.real  # type: ignore[attr-defined]
        self.reader.close()
        self.app.close()
        self.db.close()
        if self.agg is not None:
            self.agg.stop()

    def figures(self, elapsed: float) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "steps": STEPS,
            "elapsed_s": round(elapsed, 1),
            "counted": len(self.oracle.uses),
            **{f"t_{k}": round(v, 1) for k, v in self.timing.items()},
            **dict(sorted(self.oracle.tally.items())),
        }


@pytest.mark.parametrize("seed", SEEDS)
def test_seeded_model_of_the_pipeline(
    model_api: Api, model_ingest: httpx.Client, seed: int, tmp_path: Path
) -> None:
    started = time.monotonic()
    model = Model(model_api, model_ingest, seed, tmp_path / "aggregator.log")
    try:
        model.subscribe()
        model.start_aggregator()
        for n in range(STEPS):
            model.step(n)
        model.finish()
    finally:
        model.close()
    figures = model.figures(time.monotonic() - started)
    print(orjson.dumps(figures).decode())
    if REPORT:
        with open(REPORT, "ab") as out:
            out.write(orjson.dumps(figures) + b"\n")
