"""Publishing usage events: idempotent, acks=all, and done only when the broker acknowledged.

`publish` (blocking) and `publish_async` (for an asyncio loop, without a thread per call)
return only after every event has its delivery report. A request's events are enqueued with one
`produce_batch` call. Delivery reports arrive on one poller thread; the async calls that a poll
round completes are resumed with one cross-thread wake-up per event loop, not one per call
(each wake-up costs the loop a self-pipe write, an epoll round and a callback).

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
import threading
from collections.abc import Sequence
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from meterline.errors import TooManyRequests, Unavailable
from meterline.events import EncodedEvents, UsageEvent
from meterline.kafka.config import producer_config

QUEUE_FULL = "the broker queue is full; retry shortly"
STATS_INTERVAL_MS = 100
"""How often librdkafka reports its state, which tells when the producer id is assigned (each
report is a JSON document of a few kB, read on the poller thread)."""
Events = Sequence[UsageEvent] | EncodedEvents
"""What `publish` takes: event objects, or events already encoded (ingest's hot path)."""


class _Delivery:
    """Counts the delivery reports of one blocking publish call."""

    def __init__(self, expected: int) -> None:
        self.pending = expected
        self.error: str | None = None
        self.done = threading.Event()
        if expected == 0:
            self.done.set()

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and self.error is None:
            self.error = str(err)
        self.pending -= 1
        if self.pending == 0:
            self.done.set()


class _AsyncDelivery:
    """Counts the delivery reports of one async publish call; resolves a future on its loop.

    Reports arrive on the poller thread, which hands the finished call to `finished` (a list
    the poller drains after each poll round); the future is completed on the loop's own thread.
    """

    def __init__(
        self, expected: int, loop: asyncio.AbstractEventLoop, finished: list[_AsyncDelivery]
    ) -> None:
        self.pending = expected
        self.error: str | None = None
        self.loop = loop
        self.future: asyncio.Future[str | None] = loop.create_future()
        self._finished = finished
        if expected == 0:
            self.future.set_result(None)

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and self.error is None:
            self.error = str(err)
        self.pending -= 1
        if self.pending == 0:
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
    """One producer per process; `publish` is safe from many threads, `publish_async` from a loop.

    A background thread polls for delivery reports until `close`.
    """

    def __init__(self, bootstrap: str, topic: str, **overrides: Any) -> None:
        self.topic = topic
        self._ready = threading.Event()
        stats = {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self._on_stats}
        self._producer = Producer(producer_config(bootstrap, **stats, **overrides))
        self._finished: list[_AsyncDelivery] = []  # touched by whoever serves the callbacks
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)
            if self._finished:
                self._wake()

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

    def _wake(self) -> None:
        """Resume the async calls the last poll round completed: one wake-up per loop."""
        done, self._finished[:] = list(self._finished), []
        by_loop: dict[asyncio.AbstractEventLoop, list[_AsyncDelivery]] = {}
        for delivery in done:
            by_loop.setdefault(delivery.loop, []).append(delivery)
        for loop, deliveries in by_loop.items():
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
        """Block until every event is acknowledged; raise TooManyRequests or Unavailable."""
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
        timer = loop.call_later(timeout, delivery.expire)  # lighter than asyncio.timeout
        try:
            error = await delivery.future
        except TimeoutError:
            raise Unavailable("the broker did not acknowledge in time", 2) from None
        finally:
            timer.cancel()
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
