"""A seeded model of consume and ingest sharing ids, with Redis flushes and rebuilds and
injected publish timeouts, against the real API, ingest, Postgres, Redis, broker and aggregator.

The oracle below shares no code with the service: it knows only the requests it made and the
contract (first answer per id, one id space, 50 units a week on the free plan). After every step
(once the running aggregator has counted what was delivered): a new consume is granted exactly
when it fits, repeats get their first answer, an id ingest holds answers 409, ingest answers a
consume's id as a duplicate, the API's `used` is everything counted plus the grants of unknown
fate, and the grants never pass the limit; at the end the ledger holds exactly what was answered.

The one documented limit (meterline/entitlements/README.md): a flush also empties ingest's
dedupe store, so ingest answers an event reusing an old consume id as accepted (the ledger keeps
the consume's). Such answers are counted in `residual`; flushes are not drawn while a 503 is
outstanding (a client retries those first), as that would let such an ingest event win.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from meterline.errors import Unavailable
from meterline.events import UsageEvent
from tests.entitlements.conftest import Api
from tests.entitlements.test_concurrency import RunAggregator
from tests.entitlements.test_consume_edges import (
    consume,
    counted,
    rebuild_view,
    send,
    used,
)

pytestmark = pytest.mark.integration
LIMIT = 50
STEPS = 70


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


@dataclass
class Oracle:
    """What the contract says each answer must be, from the requests alone."""

    ledger: dict[str, float] = field(default_factory=dict)  # id -> the value counted for it
    asked: dict[str, float] = field(default_factory=dict)  # consume id -> its first amount
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)  # consume ids answered 503 so far
    since_flush: set[str] = field(default_factory=set)  # ids ingest's dedupe store holds
    residual: int = 0  # ingest answers of the documented limit (a flushed dedupe store)

    def total(self) -> float:
        return sum(self.ledger.values()) + sum(self.asked[i] for i in self.unknown)

    def granted(self) -> float:
        return sum(self.asked[i] for i, (s, _b) in self.answers.items() if s == 200)

    def on_consume(self, event_id: str, amount: float, status: int, body: dict[str, Any]) -> None:
        if event_id in self.answers:
            assert (status, body) == self.answers[event_id], event_id
        elif event_id in self.unknown:
            assert status in (200, 503), (event_id, status, body)
            if status == 200:
                self.unknown.discard(event_id)
                self.answers[event_id] = (status, body)
                self.ledger[event_id] = self.asked[event_id]
        elif event_id in self.ledger:
            assert status == 409, (event_id, status, body)
            self.answers[event_id] = (status, body)
        else:
            self._first(event_id, amount, status, body)

    def _first(self, event_id: str, amount: float, status: int, body: dict[str, Any]) -> None:
        room = self.total() + amount <= LIMIT
        expected = (200, 503) if room else (403,)
        assert status in expected, (event_id, amount, self.total(), status, body)
        self.asked[event_id] = amount
        if status == 503:
            self.unknown.add(event_id)
        else:
            self.answers[event_id] = (status, body)
        if status in (200, 503):
            self.since_flush.add(event_id)
        if status == 200:
            self.ledger[event_id] = amount

    def on_ingest(self, event_id: str, value: float, answer: dict[str, Any]) -> None:
        duplicate = {"accepted": 0, "duplicates": 1}
        if event_id in self.since_flush:
            assert answer == duplicate, (event_id, answer)
        elif event_id in self.ledger or event_id in self.unknown:
            assert event_id not in self.unknown, "a flush with a 503 outstanding"
            self.residual += answer != duplicate and event_id in self.asked
        else:
            assert answer == {"accepted": 1, "duplicates": 0}, (event_id, answer)
            self.ledger[event_id] = value
        if answer != duplicate:
            self.since_flush.add(event_id)


@pytest.mark.parametrize("seed", [19, 2026])
def test_seeded_model_of_consume_and_ingest(api: Api, ingest: httpx.Client, seed: int) -> None:
    rng = random.Random(seed)
    service: Any = api.deps.service
    real = service._publisher
    flaky = service._publisher = Flaky(real, rng)
    oracle = Oracle()
    ids = [f"m{seed}-{n}" for n in range(16)]
    try:
        with RunAggregator(api.env):
            for _step in range(STEPS):
                step(api, ingest, rng, flaky, oracle, ids)
                settle(api, oracle)
                assert (
                    sum(oracle.asked[i] for i, (s, _b) in oracle.answers.items() if s == 200)
                    <= LIMIT
                )
            service._publisher = real
            for event_id in sorted(oracle.unknown):
                r = consume(api, "s1", {"amount": 1, "event_id": event_id})
                oracle.on_consume(event_id, 1, r.status_code, r.json())
            settle(api, oracle)
    finally:
        service._publisher = real
    assert not oracle.unknown
    assert {e: v for e, v, _t in counted(api, "s1")} == oracle.ledger
    print(f"seed {seed}: {len(oracle.ledger)} ids, {oracle.residual} ingest answers past a flush")


def settle(api: Api, oracle: Oracle, timeout: float = 30.0) -> None:
    """Wait until the pipeline counted every delivered event and the view agrees: `used` is
    then everything counted plus the pending grants of unknown fate."""
    deadline = time.monotonic() + timeout
    while True:
        rows = {e for e, _v, _t in counted(api, "s1")}
        delivered = set(oracle.ledger) | (oracle.unknown & rows)
        now_used = used(api, "s1")
        if rows == delivered and now_used == oracle.total():
            return
        assert time.monotonic() < deadline, (sorted(rows ^ delivered), now_used, oracle.total())
        time.sleep(0.1)


def step(
    api: Api, ingest: httpx.Client, rng: random.Random, flaky: Flaky, oracle: Oracle, ids: list[str]
) -> None:
    roll = rng.random()
    event_id = rng.choice(ids)
    if roll < 0.08 and not oracle.unknown:
        redis.Redis.from_url(api.env["METERLINE_REDIS_URL"]).flushall()
        rebuild_view(api)
        oracle.since_flush.clear()
    elif roll < 0.35:
        value = float(
            sum(map(ord, event_id)) % 5 + 1
        )  # one value per id: a resend is the same event
        answer = send(ingest, event_id, value)
        assert answer.status_code == 202, answer.text
        oracle.on_ingest(event_id, value, answer.json())
    else:
        flaky.fail = rng.random() < 0.15
        amount = float(rng.randint(1, 12))
        r = consume(api, "s1", {"amount": amount, "event_id": event_id})
        flaky.fail = False
        body = r.json() if r.status_code != 503 else {}
        oracle.on_consume(event_id, amount, r.status_code, body)
