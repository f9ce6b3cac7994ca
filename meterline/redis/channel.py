"""One Redis pub/sub channel: publish to it, and listen to it on a thread that reconnects.

Pub/sub delivers a message to the subscribers connected when it is published, and to no one
else: a listener that was disconnected, even briefly, cannot know what it missed. So the
listener reports both edges of its connection — `on_joined` once the subscription is confirmed
(at start and after every reconnect), `on_lost` when it drops — and its user treats everything
between them as unknown (for caches: drop what they hold, and keep entries briefly until the
next `on_joined`).

A drop is seen when the connection fails: the server closed it (a restart, `CLIENT KILL`, a
failover) or reset it; a silent network loss only through TCP keepalives. Then `on_lost` is
called and the listener connects again every `retry_s` until the server answers. (Should
redis-py reconnect and subscribe again by itself, `on_joined` comes again without `on_lost`.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import redis

from meterline.urls import redact

log = logging.getLogger(__name__)
HEALTH_CHECK_S = 1.0


class ChannelListener:
    """Calls `on_message(data)` for each message of `channel`, on a daemon thread of its own.
    Callbacks run on that thread and must not raise (an exception is logged and the message
    dropped)."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_message: Callable[[bytes], object],
        on_joined: Callable[[], object],
        on_lost: Callable[[], object],
        retry_s: float = 0.5,
    ) -> None:
        self._url, self._channel = url, channel
        self._on_message, self._on_joined, self._on_lost = on_message, on_joined, on_lost
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen:{channel}", daemon=True)
        self.joined = threading.Event()

    def start(self) -> ChannelListener:
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except (redis.RedisError, OSError) as exc:
                if self.joined.is_set():
                    log.warning(
                        "pub/sub connection lost; reconnecting",
                        extra={
                            "channel": self._channel,
                            "url": redact(self._url),
                            "error": str(exc),
                        },
                    )
            finally:
                if self.joined.is_set():
                    self.joined.clear()
                    self._call(self._on_lost)
            self._stop.wait(self._retry_s)

    def _listen(self) -> None:
        client = redis.Redis.from_url(
            self._url,
            socket_connect_timeout=2,
            socket_timeout=2 * HEALTH_CHECK_S,
            socket_keepalive=True,
            health_check_interval=HEALTH_CHECK_S,
        )
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._channel)
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=HEALTH_CHECK_S)
                if message is not None:
                    self._handle(message)
        finally:
            pubsub.close()
            client.close()

    def _handle(self, message: dict[str, object]) -> None:
        if message["type"] == "subscribe":
            self.joined.set()
            log.info("pub/sub joined", extra={"channel": self._channel})
            self._call(self._on_joined)
        elif message["type"] == "message":
            data = message["data"]
            assert isinstance(data, bytes)
            self._call(lambda: self._on_message(data))

    def _call(self, callback: Callable[[], object]) -> None:
        try:
            callback()
        except Exception:
            log.exception("pub/sub callback failed", extra={"channel": self._channel})


def publish(client: redis.Redis, channel: str, data: bytes) -> bool:
    """Publish `data`; False (logged) when Redis cannot take it now."""
    try:
        client.publish(channel, data)
    except redis.RedisError as exc:
        log.warning("pub/sub publish failed", extra={"channel": channel, "error": str(exc)})
        return False
    return True


def publish_all(client: redis.Redis, channel: str, messages: Sequence[bytes]) -> bool:
    """Publish `messages` in order, in one round trip (a pipeline of PUBLISH commands: each
    subscriber still gets one message each); False (logged) when Redis cannot take them now."""
    try:
        pipe = client.pipeline(transaction=False)
        for data in messages:
            pipe.publish(channel, data)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("pub/sub publish failed", extra={"channel": channel, "error": str(exc)})
        return False
    return True
