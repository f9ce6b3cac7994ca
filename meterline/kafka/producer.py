"""Publishing usage events: idempotent, acks=all, and done only when the broker acknowledged.

`publish` (blocking) and `publish_async` (for an asyncio loop, without a thread per call)
return only after every event has its delivery report. A request's events are enqueued with one
`produce_batch` call.

Who serves the delivery reports: an event loop with async calls in flight polls for them itself,
every `LOOP_POLL_S`, and resumes its own calls directly; otherwise (blocking calls, an idle
publisher) a poller thread does, and resumes the async calls a poll round completed with one
cross-thread wake-up per loop. Why the loop polls: confluent-kafka takes the interpreter lock
once per delivered message, so a poller thread served a 100-event request's reports in 100
hand-offs of the lock with a busy loop, each a wait of up to the switch interval (5 ms). Measured
on ingest at 1,000 100-event requests/s offered (2026-12-04, alternating pairs): request p50
14.7-18.2 -> 9.2-12.8 ms and CPU per event 5-15% lower (3 pairs); the produce stage's p99
21.8-52.2 -> 13.4-14.1 ms (instrumented, 2 pairs). At saturation (closed loop) 8 pairs showed
no clear difference either way.

The idempotent producer can deliver only once the broker gave it a producer id. librdkafka asks
for one when a broker connection is up, and retries every 500 ms before that, so a message
produced right after start waited ~0.5 s (measured: the first request to a freshly started ingest
took 0.35-0.87 s, later ones ~9 ms). The statistics librdkafka emits every `STATS_INTERVAL_MS`
say when the id is assigned: `ready` and `wait_ready` read them.

A full local queue raises TooManyRequests (429); a broker that does not acknowledge in time,
or refuses, raises Unavailable (503). Either way the caller must treat the whole request as not
accepted and the client retries the same ids; copies that a partial failure leaves on the topic
are dropped by the ledger. Messages already queued when a call fails stay queued and may still
be delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from meterline.errors import TooManyRequests, Unavailable
from meterline.events import EncodedEvents, UsageEvent
from meterline.kafka.config import producer_config

log = logging.getLogger(__name__)

QUEUE_FULL = "the broker queue is full; retry shortly"
STATS_INTERVAL_MS = 100
"""How often librdkafka reports its state, which tells when the producer id is assigned (each
report is a JSON document of a few kB, read by whoever polls)."""
LOOP_POLL_S = 0.001
"""How often a loop with async calls in flight polls for their reports (librdkafka's own
`linger.ms` and round trip take ~5-8 ms, so a report waits ~0.5 ms longer on average)."""
THREAD_IDLE_S = 0.05
"""How long the poller thread waits for reports, or for the loops to stop serving them."""
Events = Sequence[UsageEvent] | EncodedEvents
"""What `publish` takes: event objects, or events already encoded (ingest's hot path)."""


class _Delivery:
    """Counts the delivery reports of one blocking publish call. (Reports may be served on
    two threads at once: `next` on a count is one step under the interpreter lock, where
    `pending -= 1` would be three.)"""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.reports = itertools.count(1)
        self.error: str | None = None
        self.done = threading.Event()
        if expected == 0:
            self.done.set()

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and self.error is None:
            self.error = str(err)
        if next(self.reports) == self.expected:
            self.done.set()


class _AsyncDelivery:
    """Counts the delivery reports of one async publish call; resolves a future on its loop.

    Whoever serves the last report hands the call to `finished`; the future is completed on
    the loop's own thread.
    """

    def __init__(
        self, expected: int, loop: asyncio.AbstractEventLoop, finished: deque[_AsyncDelivery]
    ) -> None:
        self.expected = expected
        self.reports = itertools.count(1)
        self.error: str | None = None
        self.loop = loop
        self.future: asyncio.Future[str | None] = loop.create_future()
        self._finished = finished
        if expected == 0:
            self.future.set_result(None)

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and self.error is None:
            self.error = str(err)
        if next(self.reports) == self.expected:
            self._finished.append(self)

    def finish(self) -> None:
        """Complete the future (on the loop's thread)."""
        if not self.future.done():
            self.future.set_result(self.error)

    def expire(self) -> None:
        """Give up waiting (on the loop's thread): the future raises TimeoutError."""
        if not self.future.done():
            self.future.set_exception(TimeoutError())


def _finish_all(deliveries: list[_AsyncDelivery]) -> None:
    for delivery in deliveries:
        delivery.finish()


class EventPublisher:
    """One producer per process; `publish` is safe from many threads, `publish_async` from
    any number of loops.

    A background thread polls for delivery reports while no event loop does, until `close`.
    """

    def __init__(self, bootstrap: str, topic: str, **overrides: Any) -> None:
        self.topic = topic
        self._ready = threading.Event()
        stats = {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self._on_stats}
        self._producer = Producer(producer_config(bootstrap, **stats, **overrides))
        self._finished: deque[_AsyncDelivery] = deque()  # filled by whoever serves reports
        # The loops that serve reports: their async calls in flight, and their next poll round.
        self._serving: dict[asyncio.AbstractEventLoop, int] = {}
        self._rounds: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
        self._stop = threading.Event()
        self._polling = threading.Lock()  # a loop's poll round, against `close`
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        """The poller thread: serves the reports while no running loop does (see the module
        docstring; a loop stopped with calls in flight polls no more)."""
        while not self._stop.is_set():
            if any(loop.is_running() for loop in list(self._serving)):
                self._stop.wait(THREAD_IDLE_S)
                continue
            try:
                self._producer.poll(THREAD_IDLE_S)
            except Exception:  # a callback raised: keep serving the others
                log.exception("a Kafka callback failed")
            self._wake()

    def _poll_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """One poll round on `loop`; the next one follows while it has calls in flight, even
        when this one raised (an exception in a callback). After `close` none starts: close
        serves what is left."""
        try:
            with self._polling:
                if self._stop.is_set():
                    return
                self._producer.poll(0)
            self._wake(loop)
        finally:
            if loop in self._serving and not self._stop.is_set():
                self._rounds[loop] = loop.call_later(LOOP_POLL_S, self._poll_on, loop)

    def _enter(self, loop: asyncio.AbstractEventLoop) -> None:
        """An async call on `loop` is in flight: the loop serves reports until none is."""
        calls = self._serving.get(loop, 0)
        self._serving[loop] = calls + 1
        if not calls:
            self._rounds[loop] = loop.call_later(LOOP_POLL_S, self._poll_on, loop)

    def _leave(self, loop: asyncio.AbstractEventLoop) -> None:
        calls = self._serving[loop] - 1
        if calls:
            self._serving[loop] = calls
            return
        del self._serving[loop]
        self._rounds.pop(loop).cancel()

    def _on_stats(self, stats: str) -> None:
        idempotence = orjson.loads(stats).get("eos", {}).get("idemp_state")
        if idempotence == "Assigned":
            self._ready.set()
        else:
            self._ready.clear()

    @property
    def ready(self) -> bool:
        """Whether the broker has given the producer its id, as of the last statistics."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float) -> bool:
        """Block until the producer has its id (it can deliver at once), at most `timeout` s."""
        return self._ready.wait(timeout)

    def _wake(self, here: asyncio.AbstractEventLoop | None = None) -> None:
        """Resume the async calls whose last report is in: those of `here` (the running loop)
        at once, others with one wake-up per loop."""
        done: list[_AsyncDelivery] = []
        with contextlib.suppress(IndexError):  # another thread took the last one
            while self._finished:
                done.append(self._finished.popleft())
        by_loop: dict[asyncio.AbstractEventLoop, list[_AsyncDelivery]] = {}
        for delivery in done:
            by_loop.setdefault(delivery.loop, []).append(delivery)
        for loop, deliveries in by_loop.items():
            if loop is here:
                _finish_all(deliveries)
                continue
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_finish_all, deliveries)

    def _produce_all(self, events: EncodedEvents, on_delivery: Any) -> None:
        """Enqueue every event; TooManyRequests if the local queue cannot take them all."""
        topic, values, keys = self.topic, events.values, events.keys
        try:
            if len(values) == 1:
                self._producer.produce(topic, values[0], keys[0], on_delivery=on_delivery)
                return
            batch = [{"value": v, "key": k} for v, k in zip(values, keys, strict=True)]
            queued = self._producer.produce_batch(topic, batch, on_delivery=on_delivery)
        except BufferError:
            raise TooManyRequests(QUEUE_FULL, 1) from None
        if queued < len(batch):
            raise _refused(batch)

    def publish(self, events: Events, timeout: float = 10.0) -> None:
        """Block until every event is acknowledged; raise TooManyRequests or Unavailable.
        Not on an event loop's thread: it would block the loop (use `publish_async`)."""
        delivery = _Delivery(len(events))
        self._produce_all(_encoded(events), delivery)
        if not delivery.done.wait(timeout):
            raise Unavailable("the broker did not acknowledge in time", 2)
        if delivery.error is not None:
            raise Unavailable(f"the broker refused the events: {delivery.error}", 2)

    async def publish_async(self, events: Events, timeout: float = 10.0) -> None:
        """`publish` for an asyncio loop: produces on the loop's thread and awaits the reports.

        Cancelling the caller abandons the wait, not the messages already queued.
        """
        loop = asyncio.get_running_loop()
        delivery = _AsyncDelivery(len(events), loop, self._finished)
        self._produce_all(_encoded(events), delivery)
        self._enter(loop)
        timer = loop.call_later(timeout, delivery.expire)  # lighter than asyncio.timeout
        try:
            error = await delivery.future
        except TimeoutError:
            raise Unavailable("the broker did not acknowledge in time", 2) from None
        finally:
            timer.cancel()
            self._leave(loop)
        if error is not None:
            raise Unavailable(f"the broker refused the events: {error}", 2)

    def queue_depth(self) -> int:
        """Messages produced but not yet acknowledged (or failed); 0 once closed."""
        return 0 if self._stop.is_set() else len(self._producer)

    def ping(self, timeout: float = 2.0) -> bool:
        """Whether the producer has its id and the broker answers a metadata request for the
        topic (blocks up to `timeout`)."""
        if not self.ready:
            return False
        try:
            meta = self._producer.list_topics(self.topic, timeout=timeout)
        except KafkaException:
            return False
        found = meta.topics.get(self.topic)
        return found is not None and found.error is None

    def close(self, timeout: float = 10.0) -> int:
        """Flush what is queued (up to `timeout`) and stop; returns how many were left undelivered.

        Messages still undelivered then are dropped: no client was told they were accepted.
        """
        if self._stop.is_set():
            return 0
        with self._polling:  # a loop's poll round in progress ends first, and none starts
            self._stop.set()
        self._poller.join(1.0)
        left = int(self._producer.flush(timeout))
        if left:
            self._producer.purge()  # unacknowledged: their clients retry them
            self._producer.flush(0)
        self._wake()  # reports served by flush resume their callers too
        self._producer.close()
        return left


def _encoded(events: Events) -> EncodedEvents:
    return events if isinstance(events, EncodedEvents) else EncodedEvents.of(events)


def _refused(batch: list[dict[str, Any]]) -> TooManyRequests | Unavailable:
    """The error for a batch of which `produce_batch` queued only a part (it marks the rest)."""
    errors = [m["_error"] for m in batch if "_error" in m]
    if any(e.code() == KafkaError._QUEUE_FULL for e in errors):
        return TooManyRequests(QUEUE_FULL, 1)
    return Unavailable(f"the producer refused the events: {errors[0] if errors else '?'}", 2)
