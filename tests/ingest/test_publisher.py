"""EventPublisher against the real broker: batched produce, who serves the delivery reports,
batched wake-ups, refusals, and a dead producer replaced (a broker restart: test_broker_restart)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from meterline.errors import TooManyRequests, Unavailable
from meterline.events import UsageEvent
from meterline.kafka.config import consumer_config
from meterline.kafka.producer import (
    STUCK_EPOCH_BUMPS,
    THREAD_IDLE_S,
    EventPublisher,
    _AsyncDelivery,
    _Generation,
    _Progress,
    _refused,
)
from meterline_devstack.process import free_port
from tests.fixtures.services import Topics
from tests.ingest.support import read_topic


def _events(prefix: str, n: int) -> list[UsageEvent]:
    return [
        UsageEvent(1, f"{prefix}-{i}", f"c{i % 7}", "api_calls", float(i), 1_000 + i, 2_000)
        for i in range(n)
    ]


def test_concurrent_calls_on_two_loops_all_resume_and_land(
    kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    """Many calls finish within one poll round; each must resume on its own loop."""
    publisher = EventPublisher(kafka_bootstrap, kafka_topics.usage)
    sent: dict[str, list[UsageEvent]] = {}

    async def many(prefix: str) -> None:
        requests = [_events(f"{prefix}{r}", 1 + r % 5 * 20) for r in range(60)]
        sent[prefix] = [e for batch in requests for e in batch]
        await asyncio.gather(*(publisher.publish_async(batch, 10.0) for batch in requests))

    threads = [threading.Thread(target=asyncio.run, args=(many(p),)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert publisher.close(5.0) == 0
    expected = sent["a"] + sent["b"]
    got = read_topic(kafka_bootstrap, kafka_topics.usage, len(expected))
    assert sorted(got, key=lambda e: e.id) == sorted(expected, key=lambda e: e.id)


def test_a_loop_with_calls_in_flight_serves_their_reports_itself(
    kafka_bootstrap: str, kafka_topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a loop serves (the poller thread stands aside after its current poll, at most
    THREAD_IDLE_S), every report of its calls runs on the loop's thread; once the loop has no
    call in flight, the thread serves blocking calls again."""
    served: list[tuple[float, int]] = []
    report = _AsyncDelivery.__call__

    def recorded(self: _AsyncDelivery, err: KafkaError | None, msg: Message) -> None:
        served.append((time.monotonic(), threading.get_ident()))
        report(self, err, msg)

    monkeypatch.setattr(_AsyncDelivery, "__call__", recorded)
    publisher = EventPublisher(kafka_bootstrap, kafka_topics.usage)
    assert publisher.wait_ready(10.0)
    settled = time.monotonic() + 10 * THREAD_IDLE_S

    async def steady(sender: int) -> None:
        n = 0
        while time.monotonic() < settled + 1.0:
            await publisher.publish_async(_events(f"l{sender}-{n}", 10), 10.0)
            n += 1

    async def senders() -> int:
        await asyncio.gather(*(steady(k) for k in range(4)))
        return threading.get_ident()

    loop_thread = asyncio.run(senders())
    assert len(served) > 100
    assert {thread for at, thread in served if at > settled} == {loop_thread}
    publisher.publish(_events("after", 5), 10.0)
    assert publisher.close(5.0) == 0


def test_a_loop_stopped_with_a_call_in_flight_leaves_the_reports_to_the_thread(
    kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    publisher = EventPublisher(kafka_bootstrap, kafka_topics.usage)
    loop = asyncio.new_event_loop()
    call = loop.create_task(publisher.publish_async(_events("stopped", 5), 10.0))
    loop.run_until_complete(asyncio.sleep(0))  # produced; the loop stops with the call waiting
    publisher.publish(_events("meanwhile", 3), 10.0)
    loop.run_until_complete(call)  # its report came in while the loop stood still
    loop.close()
    assert publisher.close(5.0) == 0


@pytest.mark.parametrize("served_on", ["loop", "thread"])
def test_a_failing_callback_does_not_stop_the_reports(
    kafka_bootstrap: str, kafka_topics: Topics, monkeypatch: pytest.MonkeyPatch, served_on: str
) -> None:
    """An exception from a callback ends that poll round, on a loop serving async calls or on
    the thread serving blocking ones; the rounds after it still serve every report."""
    armed, raised = threading.Event(), threading.Event()
    on_stats = _Generation._on_stats

    def flaky(self: _Generation, stats: str) -> None:
        if armed.is_set() and not raised.is_set():
            raised.set()
            raise RuntimeError("a failing statistics callback")
        on_stats(self, stats)

    monkeypatch.setattr(_Generation, "_on_stats", flaky)  # bound when the producer is made
    publisher = EventPublisher(kafka_bootstrap, kafka_topics.usage)
    assert publisher.wait_ready(10.0)

    async def steady() -> None:
        armed.set()
        until = time.monotonic() + 0.5
        while not raised.is_set() or time.monotonic() < until:
            await publisher.publish_async(_events(f"a{time.monotonic()}", 5), 5.0)

    if served_on == "loop":
        asyncio.run(steady())
    armed.set()
    until = time.monotonic() + 0.5
    while not raised.is_set() or time.monotonic() < until:
        publisher.publish(_events(f"b{time.monotonic()}", 3), 5.0)
    assert publisher.close(5.0) == 0


def test_a_customer_keeps_one_partition_in_batches(
    kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    publisher = EventPublisher(kafka_bootstrap, kafka_topics.usage)
    partitions: dict[bytes | None, set[int | None]] = {}
    batch = _events("p", 70)

    async def go() -> None:
        await publisher.publish_async(batch[:1], 10.0)
        await publisher.publish_async(batch[1:], 10.0)

    asyncio.run(go())
    publisher.close(5.0)
    consumer = Consumer(consumer_config(kafka_bootstrap, "test-partitions"))
    consumer.assign([TopicPartition(kafka_topics.usage, p, OFFSET_BEGINNING) for p in range(4)])
    seen = 0
    while seen < len(batch):
        for m in consumer.consume(100, 1.0):
            if m.error() is None:
                partitions.setdefault(m.key(), set()).add(m.partition())
                seen += 1
    consumer.close()
    assert len(partitions) == 7 and all(len(p) == 1 for p in partitions.values())


def test_a_partly_queued_batch_is_refused() -> None:
    full = KafkaError(KafkaError._QUEUE_FULL)
    queue_full = _refused([{"value": b"1"}, {"value": b"2", "_error": full}])
    assert isinstance(queue_full, TooManyRequests) and queue_full.retry_after == 1
    other = _refused([{"value": b"1", "_error": KafkaError(KafkaError._MSG_TIMED_OUT)}])
    assert isinstance(other, Unavailable) and other.retry_after == 2


def test_publish_waits_for_the_reports(kafka_bootstrap: str, kafka_topics: Topics) -> None:
    publisher = EventPublisher(kafka_bootstrap, kafka_topics.usage)
    publisher.publish(_events("s", 30), 10.0)
    publisher.close(5.0)
    got = read_topic(kafka_bootstrap, kafka_topics.usage, 30)
    assert sorted(e.id for e in got) == sorted(e.id for e in _events("s", 30))


def test_ready_once_the_broker_gave_the_producer_its_id(
    kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    publisher = EventPublisher(kafka_bootstrap, kafka_topics.usage)
    assert publisher.wait_ready(10.0)
    assert publisher.ready and publisher.ping(2.0)
    publisher.close(5.0)


def test_not_ready_while_no_broker_answers() -> None:
    publisher = EventPublisher(f"127.0.0.1:{free_port()}", "nowhere")
    assert not publisher.wait_ready(1.0)
    assert not publisher.ready and not publisher.ping(0.5)
    assert publisher.close(0.5) == 0


def _stats(pid: int, epoch: int, acked: int) -> dict[str, object]:
    partitions = {"0": {"acked_msgid": acked}, "-1": {"acked_msgid": 0}}
    return {
        "eos": {"producer_id": pid, "producer_epoch": epoch},
        "topics": {"t": {"partitions": partitions}},
    }


def test_a_producer_is_stuck_once_its_epoch_climbs_with_nothing_acknowledged() -> None:
    """What a broker restarted without its state does to librdkafka (seen in its debug log:
    UnknownProducerId, then a local epoch bump and a retry, every ~100 ms, forever)."""
    progress = _Progress()
    assert not progress.stuck(_stats(-1, -1, 0))  # no id yet
    assert not progress.stuck(_stats(1, 0, 0))
    assert not progress.stuck(_stats(1, 0, 9))
    bumps = [progress.stuck(_stats(1, e, 9)) for e in range(1, STUCK_EPOCH_BUMPS + 1)]
    assert bumps == [False] * (STUCK_EPOCH_BUMPS - 1) + [True]


def test_bumps_with_acknowledgements_between_them_are_not_stuck() -> None:
    progress = _Progress()
    for epoch in range(3 * STUCK_EPOCH_BUMPS):
        assert not progress.stuck(_stats(1, epoch, epoch))  # each bump, then delivered
    assert not progress.stuck(_stats(2, 0, 40))  # a new id
    assert not progress.stuck(_stats(2, STUCK_EPOCH_BUMPS - 1, 40))
    assert progress.stuck(_stats(2, STUCK_EPOCH_BUMPS, 40))


class _FatalOnce:
    """A producer whose next `poll` raises a fatal error, as confluent-kafka does (seen when a
    broker restarted with messages in flight); then the real one."""

    def __init__(self, real: Any) -> None:
        self.real, self.raised = real, False

    def poll(self, timeout: float) -> int:
        if not self.raised:
            self.raised = True
            fatal = KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "injected", fatal=True)
            raise KafkaException(fatal)
        return int(self.real.poll(timeout))

    def __len__(self) -> int:
        return len(self.real)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.parametrize("reported", ["to the error callback", "raised from poll"])
def test_a_fatal_error_replaces_the_producer_and_fails_its_calls_in_flight(
    kafka_bootstrap: str, kafka_topics: Topics, reported: str
) -> None:
    """A fatal error (injected as librdkafka and confluent-kafka report one, while polled): the
    call in flight raises Unavailable at once, the next call is produced by a new producer
    and lands."""
    publisher = EventPublisher(kafka_bootstrap, kafka_topics.usage, **{"linger.ms": 3000})
    assert publisher.wait_ready(10.0)
    dead = publisher._gen

    async def scenario() -> None:
        doomed = asyncio.create_task(publisher.publish_async(_events("doomed", 3), 30.0))
        await asyncio.sleep(0.1)  # produced, lingering in the producer's queue
        if reported == "raised from poll":
            dead.producer = _FatalOnce(dead.producer)
        else:
            dead._on_error(KafkaError(KafkaError._FATAL, "injected", fatal=True))
        with pytest.raises(Unavailable, match="reset"):
            await doomed
        assert not publisher.ready or publisher._gen is not dead
        await publisher.publish_async(_events("after", 4), 30.0)

    asyncio.run(scenario())
    assert publisher._gen is not dead and publisher.ready
    assert publisher.close(5.0) == 0
    got = {e.id for e in read_topic(kafka_bootstrap, kafka_topics.usage, 4)}
    assert {e.id for e in _events("after", 4)} <= got


def test_a_produce_call_refused_as_fatal_replaces_the_producer(
    kafka_bootstrap: str, kafka_topics: Topics
) -> None:
    """librdkafka refuses `produce` on a producer in a fatal state (KafkaError._FATAL): that
    request answers 503 and the next goes to a new producer; other refusals replace nothing."""
    publisher = EventPublisher(kafka_bootstrap, kafka_topics.usage)
    first = publisher._gen
    other = publisher._produce_failed(first, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert "refused" in other.message and publisher._gen is first
    fatal = publisher._produce_failed(first, KafkaError(KafkaError._FATAL, "fenced"))
    assert "reset" in fatal.message and fatal.retry_after == 2
    assert publisher._gen is not first and first.dead
    publisher.publish(_events("renewed", 3), 10.0)
    assert publisher.close(5.0) == 0
