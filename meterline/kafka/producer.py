"""Publishing usage events: idempotent, acks=all, and done only when the broker acknowledged.

`publish` (blocking) and `publish_async` (for an asyncio loop, without a thread per call)
return only after every event has its delivery report. A request's events are enqueued with one
`produce_batch` call.

Who serves the delivery reports: an event loop with async calls in flight polls for them itself,
every `LOOP_POLL_S`, and resumes its own calls directly; otherwise (blocking calls, an idle
publisher) a poller thread does, and resumes the async calls a poll round completed with one
cross-thread wake-up per loop. Why the loop polls: confluent-kafka takes the interpreter lock
once per delivered message, so a poller thread served a 100-event request's reports in 100
hand-offs of the lock with a busy loop, each a wait of up to the switch interval (5 ms). What
serving reports on the loop gained is measured in ingest/README.md.

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

A producer that can no longer deliver is replaced, without a restart of the process: on a fatal
error from librdkafka, and when it is stuck, which librdkafka does not report. A broker that lost
its state (the dev stack's memory-only broker after a restart, or a broker whose producer state
expired) answers every produce request with UnknownProducerId; librdkafka then bumps the
producer's epoch itself and retries, forever, without asking for a new producer id (seen: 503s
for 9 minutes after a broker restart). The statistics show it: the epoch climbs with nothing
acknowledged (`_Progress`). The calls in flight on the old producer are answered Unavailable
(their messages purged: fate unknown, the client retries the same ids and the ledger drops any
copy); new calls go to the new producer, which asks the broker for a fresh id.
`RenewingProducer` is that mechanism on its own: the dead-letter publisher (`meterline.kafka.dlq`)
uses it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
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
STUCK_EPOCH_BUMPS = 5
"""Epoch bumps with nothing acknowledged in between that mark a producer as stuck. librdkafka
bumps once per failed produce request that leaves its sequence numbers in doubt, and retries
after `retry.backoff.ms` (100 ms): a stuck producer is found in ~0.5 s, and a healthy one bumps
once after a rare timeout, then delivers."""
RETIRE_GRACE_S = 0.5
"""How long a replaced producer keeps purging: a call that took it just before the swap is
answered too."""
RETIRE_LIMIT_S = 5.0
"""The longest a replaced producer is polled for the reports of its purged messages."""
RESET = "the producer was reset before the broker acknowledged; retry the same ids"
Events = Sequence[UsageEvent] | EncodedEvents
"""What `publish` takes: event objects, or events already encoded (ingest's hot path)."""


class Delivery:
    """Counts the delivery reports of one blocking publish call. (Reports may be served on
    two threads at once: `next` on a count is one step under the interpreter lock, where
    `pending -= 1` would be three.)"""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.reports = itertools.count(1)
        self.error: KafkaError | None = None
        self.done = threading.Event()
        if expected == 0:
            self.done.set()

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and self.error is None:
            self.error = err
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
        self.error: KafkaError | None = None
        self.loop = loop
        self.future: asyncio.Future[KafkaError | None] = loop.create_future()
        self._finished = finished
        if expected == 0:
            self.future.set_result(None)

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and self.error is None:
            self.error = err
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


class _Progress:
    """Whether a producer is stuck, told from its statistics: its idempotence epoch rose by
    `STUCK_EPOCH_BUMPS` while nothing was acknowledged (see the module docstring). A new
    producer id, a new acknowledgement or an epoch that went back starts the count again."""

    def __init__(self) -> None:
        self._pid = self._epoch = self._acked = -1

    def stuck(self, stats: dict[str, Any]) -> bool:
        eos = stats.get("eos", {})
        pid, epoch = int(eos.get("producer_id", -1)), int(eos.get("producer_epoch", -1))
        acked = _acked(stats)
        if pid != self._pid or acked != self._acked or epoch < self._epoch:
            self._pid, self._epoch, self._acked = pid, epoch, acked
            return False
        return epoch - self._epoch >= STUCK_EPOCH_BUMPS


def _acked(stats: dict[str, Any]) -> int:
    """The last acknowledged message ids of every partition, summed: it grows with each ack."""
    return sum(
        int(p.get("acked_msgid", 0))
        for topic in stats.get("topics", {}).values()
        for p in topic.get("partitions", {}).values()
    )


class _Generation:
    """One librdkafka producer, and what its callbacks said of it: `ready` once the broker gave
    it an id, `dead` (the reason) once it can no longer deliver. Both are set while it is
    polled (`poll`); the publisher replaces a dead one."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.ready = threading.Event()
        self.dead: str | None = None
        self._progress = _Progress()
        self.producer = Producer({**config, "stats_cb": self._on_stats, "error_cb": self._on_error})

    def _on_stats(self, stats: str) -> None:
        doc = orjson.loads(stats)
        if doc.get("eos", {}).get("idemp_state") == "Assigned":
            self.ready.set()
        else:
            self.ready.clear()
        if self._progress.stuck(doc):
            self.dead = "stuck: the broker answers no produce request with this producer id"

    def poll(self, timeout: float) -> None:
        """Serve the producer's callbacks for up to `timeout` s. A fatal error marks it dead:
        confluent-kafka raises it from `poll` (seen when a broker restarted under load:
        UnknownProducerId for messages in flight, "unable to retry without risking
        duplication"); exceptions from the callbacks propagate."""
        try:
            self.producer.poll(timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not isinstance(err, KafkaError) or not err.fatal():
                raise
            self._on_error(err)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.dead = self.dead or f"fatal error: {err}"


class RenewingProducer:
    """A librdkafka producer replaced by a new one when it can no longer deliver (see the module
    docstring), for any publisher of this package.

    `current` is the producer to produce on. Whoever polls it (`serve`, or its owner's own poll)
    and finds it dead calls `renew`: a new producer takes its place, and a thread of its own
    purges the dead one's messages, serves their reports (each with a purge error, so their
    callers are answered), calls `on_reports` after each poll and closes it. None is renewed
    once `stopping` is set; `close` then flushes the last one.
    """

    def __init__(
        self,
        config: dict[str, Any],
        stopping: threading.Event,
        on_reports: Callable[[], None] = lambda: None,
    ) -> None:
        self._config = {"statistics.interval.ms": STATS_INTERVAL_MS, **config}
        self._stopping = stopping
        self._on_reports = on_reports
        self._gen = _Generation(self._config)
        self._renewing = threading.Lock()
        self._retiring: list[threading.Thread] = []

    @property
    def current(self) -> _Generation:
        return self._gen

    def serve(self, timeout: float) -> None:
        """Poll the current producer for up to `timeout` s (its reports and statistics), then
        `on_reports`; renew it if it is dead. A callback that raised is logged."""
        gen = self._gen
        try:
            gen.poll(timeout)
        except Exception:  # a callback raised: keep serving the others
            log.exception("a Kafka callback failed")
        self._on_reports()
        if gen.dead:
            self.renew(gen)

    def renew(self, dead: _Generation) -> None:
        """Put a new producer in place of `dead` (once, whoever finds it first; not after
        `stopping`), and retire `dead` on a thread of its own. Creating one takes ~2 ms."""
        with self._renewing:
            if self._gen is not dead or self._stopping.is_set():
                return
            self._gen = _Generation(self._config)
            retire = threading.Thread(
                target=self._retire, args=(dead,), name="kafka-retire", daemon=True
            )
            self._retiring.append(retire)
        log.warning("Kafka producer replaced", extra={"reason": dead.dead})
        retire.start()

    def _retire(self, dead: _Generation) -> None:
        """Purge `dead`'s messages and serve their reports, for `RETIRE_GRACE_S` at least and
        until none is left; then close it."""
        producer = dead.producer
        start = time.monotonic()
        while True:
            producer.purge()
            try:
                dead.poll(0.01)
            except Exception:  # a callback raised: keep serving the others
                log.exception("a Kafka callback failed")
            self._on_reports()
            elapsed = time.monotonic() - start
            if elapsed > RETIRE_LIMIT_S or (elapsed > RETIRE_GRACE_S and not len(producer)):
                break
        with contextlib.suppress(KafkaException):  # its fatal error, raised again
            producer.close()

    def close(self, timeout: float) -> int:
        """Once `stopping` is set: flush the last producer (up to `timeout`) and close it, and
        wait for the retired ones; returns how many messages were left undelivered."""
        with self._renewing:  # none is renewed after the stop
            producer = self._gen.producer
        left = _drain(producer, timeout)
        self._on_reports()  # reports served by flush resume their callers too
        with contextlib.suppress(KafkaException):  # a fatal error, raised again
            producer.close()
        for retire in self._retiring:
            retire.join(RETIRE_LIMIT_S)
        return left


class EventPublisher:
    """One producer per process; `publish` is safe from many threads, `publish_async` from
    any number of loops.

    A background thread polls for delivery reports while no event loop does, until `close`.
    Whoever polls and finds the producer dead replaces it (`RenewingProducer.renew`); a thread
    of its own then answers the old producer's calls in flight and closes it.
    """

    def __init__(self, bootstrap: str, topic: str, **overrides: Any) -> None:
        self.topic = topic
        self._finished: deque[_AsyncDelivery] = deque()  # filled by whoever serves reports
        # The loops that serve reports: their async calls in flight, and their next poll round.
        self._serving: dict[asyncio.AbstractEventLoop, int] = {}
        self._rounds: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
        self._stop = threading.Event()
        config = producer_config(bootstrap, **overrides)
        self._producers = RenewingProducer(config, self._stop, self._wake)
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
            self._producers.serve(THREAD_IDLE_S)

    def _poll_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """One poll round on `loop`; the next one follows while it has calls in flight, even
        when this one raised (an exception in a callback). After `close` none starts: close
        serves what is left."""
        try:
            with self._polling:
                if self._stop.is_set():
                    return
                gen = self._gen
                gen.poll(0)
            self._wake(loop)
            if gen.dead:
                self._producers.renew(gen)
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

    @property
    def _gen(self) -> _Generation:
        return self._producers.current

    @property
    def ready(self) -> bool:
        """Whether the broker has given the producer its id, as of the last statistics, and
        the producer is not dead."""
        gen = self._gen
        return gen.ready.is_set() and not gen.dead

    def wait_ready(self, timeout: float) -> bool:
        """Block until the producer has its id (it can deliver at once), at most `timeout` s."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            gen = self._gen  # a dead one is ready no more: wait for its replacement
            (self._stop if gen.dead else gen.ready).wait(min(left, THREAD_IDLE_S))
        return True

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
        gen = self._gen
        if gen.dead:
            self._producers.renew(gen)
            gen = self._gen
        producer = gen.producer
        try:
            if len(values) == 1:
                producer.produce(topic, values[0], keys[0], on_delivery=on_delivery)
                return
            batch: list[dict[str, Any]] = [
                {"value": v, "key": k} for v, k in zip(values, keys, strict=True)
            ]
            queued = producer.produce_batch(topic, batch, on_delivery=on_delivery)
        except BufferError:
            raise TooManyRequests(QUEUE_FULL, 1) from None
        except KafkaException as exc:
            raise self._produce_failed(gen, exc.args[0]) from None
        except RuntimeError:  # "has been closed": retired since `gen` was read
            raise Unavailable(RESET, 2) from None
        if queued < len(batch):
            fatal = [m["_error"] for m in batch if _fatal(m.get("_error"))]
            raise self._produce_failed(gen, fatal[0]) if fatal else _refused(batch)

    def _produce_failed(self, gen: _Generation, err: KafkaError) -> Unavailable:
        """The error for a produce call librdkafka refused; a fatal refusal retires `gen`."""
        if _fatal(err):
            gen.dead = gen.dead or f"fatal error: {err}"
            self._producers.renew(gen)
            return Unavailable(RESET, 2)
        return Unavailable(f"the producer refused the events: {err}", 2)

    def publish(self, events: Events, timeout: float = 10.0) -> None:
        """Block until every event is acknowledged; raise TooManyRequests or Unavailable.
        Not on an event loop's thread: it would block the loop (use `publish_async`)."""
        delivery = Delivery(len(events))
        self._produce_all(_encoded(events), delivery)
        if not delivery.done.wait(timeout):
            raise Unavailable("the broker did not acknowledge in time", 2)
        if delivery.error is not None:
            raise _undelivered(delivery.error)

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
            raise _undelivered(error)

    def queue_depth(self) -> int:
        """Messages produced but not yet acknowledged (or failed); 0 once closed."""
        return 0 if self._stop.is_set() else len(self._gen.producer)

    def ping(self, timeout: float = 2.0) -> bool:
        """Whether the producer has its id and the broker answers a metadata request for the
        topic (blocks up to `timeout`)."""
        if not self.ready:
            return False
        try:
            meta = self._gen.producer.list_topics(self.topic, timeout=timeout)
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
        return self._producers.close(timeout)


def _drain(producer: Producer, timeout: float) -> int:
    """Flush for up to `timeout`; purge what is left then (unacknowledged: their clients retry
    them), or after a fatal error, which `flush` raises. Returns how many were left."""
    try:
        left = int(producer.flush(timeout))
    except KafkaException:
        left = len(producer)
    if left:
        producer.purge()
        with contextlib.suppress(KafkaException):
            producer.flush(0)
    return left


def _encoded(events: Events) -> EncodedEvents:
    return events if isinstance(events, EncodedEvents) else EncodedEvents.of(events)


def _fatal(err: KafkaError | None) -> bool:
    return err is not None and (err.fatal() or err.code() == KafkaError._FATAL)


def _undelivered(err: KafkaError) -> Unavailable:
    """The error for a call with a failed delivery report (a purged message: fate unknown)."""
    if err.code() in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
        return Unavailable(RESET, 2)
    return Unavailable(f"the broker refused the events: {err}", 2)


def _refused(batch: list[dict[str, Any]]) -> TooManyRequests | Unavailable:
    """The error for a batch of which `produce_batch` queued only a part (it marks the rest)."""
    errors = [m["_error"] for m in batch if "_error" in m]
    if any(e.code() == KafkaError._QUEUE_FULL for e in errors):
        return TooManyRequests(QUEUE_FULL, 1)
    return Unavailable(f"the producer refused the events: {errors[0] if errors else '?'}", 2)
