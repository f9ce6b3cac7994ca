"""Publishing usage events: idempotent, acks=all, and done only when the broker acknowledged.

`publish` returns only after every event has its delivery report. A full local queue raises
TooManyRequests (429); a broker that does not acknowledge in time raises Unavailable (503).
Either way the caller must treat the whole request as not accepted and the client retries the
same ids; duplicates that a partial failure leaves on the topic are dropped by the ledger.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from meterline.errors import TooManyRequests, Unavailable
from meterline.events import UsageEvent, encode_event
from meterline.kafka.config import producer_config


class _Delivery:
    """Counts the delivery reports of one publish call."""

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


class EventPublisher:
    """One producer per process; `publish` is safe from many threads."""

    def __init__(self, bootstrap: str, topic: str, **overrides: Any) -> None:
        self.topic = topic
        self._producer = Producer(producer_config(bootstrap, **overrides))
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def publish(self, events: Sequence[UsageEvent], timeout: float = 10.0) -> None:
        """Block until every event is acknowledged; raise TooManyRequests or Unavailable."""
        delivery = _Delivery(len(events))
        try:
            for e in events:
                self._producer.produce(self.topic, encode_event(e), e.key, on_delivery=delivery)
        except BufferError:
            raise TooManyRequests("the broker queue is full; retry shortly", 1) from None
        if not delivery.done.wait(timeout):
            raise Unavailable("the broker did not acknowledge in time", 2)
        if delivery.error is not None:
            raise Unavailable(f"the broker refused the events: {delivery.error}", 2)

    async def publish_async(self, events: Sequence[UsageEvent], timeout: float = 10.0) -> None:
        await asyncio.to_thread(self.publish, events, timeout)

    def queue_depth(self) -> int:
        return len(self._producer)

    def close(self, timeout: float = 10.0) -> int:
        """Flush what is queued and stop; returns how many messages were left undelivered."""
        left = self._producer.flush(timeout)
        self._stop.set()
        self._poller.join(1.0)
        return int(left)
