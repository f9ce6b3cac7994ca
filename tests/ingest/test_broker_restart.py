"""A broker SIGKILLed and restarted on the same port (as the dev stack does): the publisher
replaces its producer, whose idempotence state the new broker no longer knows, and ingest
answers 202 again within seconds; every event answered 202 once the old broker was gone is on
the new broker's topic.

Each test runs a broker of its own on a fixed port (the session's broker stays up for the
others). The memory-only broker loses what it held: only events sent after the kill are
checked.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from meterline.errors import Unavailable
from meterline.events import UsageEvent
from meterline.kafka import ensure_topics
from meterline.kafka.producer import EventPublisher
from meterline_devstack.broker import broker_process
from meterline_devstack.process import ManagedProcess
from tests.fixtures.services import Topics
from tests.ingest.support import bearer, ingest_process, read_topic, seed

RECOVERY_S = 10.0
"""The contract: 202 again within this long of the broker being back."""


@dataclass
class OwnBroker:
    proc: ManagedProcess
    bootstrap: str
    topic: str

    def kill_and_restart(self, down_s: float = 0.3) -> float:
        """SIGKILL the broker, start a new one on the same port with the topic made again
        (what the dev stack's supervisor does); returns when it was back (monotonic)."""
        assert self.proc.proc is not None
        os.kill(self.proc.proc.pid, signal.SIGKILL)
        self.proc.proc.wait(10)
        time.sleep(down_s)
        self.proc.start()
        ensure_topics(self.bootstrap, [self.topic], partitions=4)
        return time.monotonic()


@pytest.fixture
def own_broker(tmp_path: Path, kafka_topics: Topics) -> Iterator[OwnBroker]:
    proc, bootstrap = broker_process(tmp_path / "broker")
    proc.start()
    try:
        ensure_topics(bootstrap, [kafka_topics.usage], partitions=4)
        yield OwnBroker(proc, bootstrap, kafka_topics.usage)
    finally:
        proc.stop()


def _events(prefix: str, n: int) -> list[UsageEvent]:
    return [
        UsageEvent(1, f"{prefix}-{i}", f"c{i % 5}", "api_calls", 1.0, 1_000, 2_000)
        for i in range(n)
    ]


def test_the_publisher_delivers_again_after_the_broker_restarts(own_broker: OwnBroker) -> None:
    publisher = EventPublisher(own_broker.bootstrap, own_broker.topic)
    try:
        publisher.publish(_events("before", 10), 10.0)
        back = own_broker.kill_and_restart()
        delivered: list[UsageEvent] = []
        outcomes: list[str] = []

        async def until_delivered() -> None:
            for attempt in itertools.count():
                batch = _events(f"after{attempt}", 5)
                try:
                    await publisher.publish_async(batch, 3.0)
                except Unavailable as exc:
                    outcomes.append(exc.message)
                    await asyncio.sleep(0.05)
                    continue
                delivered.extend(batch)
                return

        asyncio.run(asyncio.wait_for(until_delivered(), RECOVERY_S + 5))
        recovered_s = time.monotonic() - back
        print(f"delivered again {recovered_s:.2f} s after the broker was back; before: {outcomes}")
        assert recovered_s < RECOVERY_S
        assert publisher.wait_ready(5.0)
    finally:
        publisher.close(5.0)
    got = read_topic(own_broker.bootstrap, own_broker.topic, len(delivered))
    assert {e.id for e in delivered} <= {e.id for e in got}


@dataclass
class Load:
    """Clients posting 10-event batches with fresh ids; what each request got, and when."""

    url: str
    key: str
    answers: list[tuple[float, float, int, list[str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    counter: Iterator[int] = field(default_factory=itertools.count)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=bearer(self.key), timeout=30.0) as http:
            while not self.stop.is_set():
                n = next(self.counter)
                ids = [f"r{n}-{i}" for i in range(10)]
                body = [{"id": i, "customer": f"c{n % 7}", "meter": "api_calls"} for i in ids]
                sent = time.monotonic()
                status = http.post("/v1/events", json=body).status_code
                self.answers.append((sent, time.monotonic(), status, ids))
                if status != 202:
                    time.sleep(0.05)


@pytest.mark.slow
def test_ingest_answers_202_again_after_a_broker_restart_and_loses_no_accepted_event(
    own_broker: OwnBroker,
    service_env: dict[str, str],
    pg_conninfo: str,
    tmp_path: Path,
) -> None:
    keys = seed(pg_conninfo)
    env = {**service_env, "METERLINE_KAFKA_BOOTSTRAP": own_broker.bootstrap}
    proc, url = ingest_process(env, tmp_path / "ingest")
    proc.start()
    load = Load(url, keys.acme_ingest)
    clients = [threading.Thread(target=load.run) for _ in range(4)]
    try:
        for t in clients:
            t.start()
        while sum(a[2] == 202 for a in load.answers) < 20:
            time.sleep(0.01)
        killed = time.monotonic()
        back = own_broker.kill_and_restart()
        deadline = back + RECOVERY_S
        while time.monotonic() < deadline and not any(
            a[2] == 202 and a[0] > back for a in load.answers
        ):
            time.sleep(0.05)
        time.sleep(1.0)  # a little more load on the recovered path
    finally:
        load.stop.set()
        for t in clients:
            t.join(40)
        proc.stop()
    after = [a for a in load.answers if a[0] > killed]
    firsts = [done for sent, done, status, _ in after if status == 202 and sent > back]
    statuses = sorted({a[2] for a in after})
    assert firsts, f"no 202 within {RECOVERY_S} s of the broker being back; statuses {statuses}"
    print(f"first 202 {min(firsts) - back:.2f} s after the broker was back; statuses {statuses}")
    assert min(firsts) - back < RECOVERY_S
    assert set(statuses) <= {202, 429, 503}  # 429: shed while slow (a loaded machine), retried
    accepted = {i for _, _, status, ids in after if status == 202 for i in ids}
    got = read_topic(own_broker.bootstrap, own_broker.topic, len(accepted))
    assert accepted <= {e.id for e in got}
