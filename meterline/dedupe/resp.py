"""A minimal pipelined RESP2 connection to Redis, for the dedupe fast path only.

Why not redis-py here: its asyncio client spends ~230 µs of CPU per call on this machine class
(connection pool, lock, retry and health-check layers), measured with one EVALSHA of one id; a
raw call costs ~20 µs. The fast path makes two calls per merged batch of requests, so that
overhead was the largest single cost of a single-event request. Everything else in Meterline
keeps using redis-py (`meterline.redis`).

One connection carries every call: commands are written at once and replies matched in order
(Redis answers a connection's commands in order). It connects on first use and again after it
was lost; a call on a lost connection raises ConnectionError. Supports `redis://` and
`rediss://` URLs with an optional user, password and database number.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, cast
from urllib.parse import unquote, urlsplit

Reply = bytes | int | list[Any] | None


class RespError(Exception):
    """An error reply from Redis (`-ERR ...`, `-NOSCRIPT ...`)."""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiters: collections.deque[asyncio.Future[Reply]] = collections.deque()
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they act as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.waiters:
            parsed = parse(self.buffer, 0)
            if parsed is None:
                return
            reply, end = parsed
            del self.buffer[:end]
            waiter = self.waiters.popleft()
            if waiter.done():  # its caller gave up (timeout); the reply is dropped in order
                continue
            if isinstance(reply, RespError):
                waiter.set_exception(reply)
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("the Redis connection was closed")
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError(str(self.lost)))


def encode(*args: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def parse(buf: bytearray, at: int) -> tuple[Reply | RespError, int] | None:
    """One reply from `buf` at `at`, and where it ends; None if `buf` does not hold it all."""
    line_end = buf.find(b"\r\n", at)
    if line_end < 0:
        return None
    kind, head, after = buf[at], bytes(buf[at + 1 : line_end]), line_end + 2
    if kind == 43:  # + simple string
        return head, after
    if kind == 45:  # - error
        return RespError(head.decode("utf-8", "replace")), after
    if kind == 58:  # : integer
        return int(head), after
    if kind == 36:  # $ bulk string
        size = int(head)
        if size < 0:
            return None, after
        if len(buf) < after + size + 2:
            return None
        return bytes(buf[after : after + size]), after + size + 2
    if kind == 42:  # * array
        return _array(buf, int(head), after)
    raise ConnectionError(f"unexpected Redis reply type {chr(kind)!r}")


def _array(buf: bytearray, count: int, at: int) -> tuple[Reply, int] | None:
    if count < 0:
        return None, at
    items: list[Any] = []
    for _ in range(count):
        parsed = parse(buf, at)
        if parsed is None:
            return None
        item, at = parsed
        items.append(item)
    return items, at


class RespConnection:
    """See the module docstring. Runs on one event loop."""

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a redis:// or rediss:// URL: {url!r}")
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 6379
        self._tls = parts.scheme == "rediss"
        self._setup: list[bytes] = []
        if parts.password is not None:
            user = unquote(parts.username or "default").encode()
            self._setup.append(encode(b"AUTH", user, unquote(parts.password).encode()))
        db = parts.path.strip("/")
        if db and db != "0":
            self._setup.append(encode(b"SELECT", db.encode()))
        self._connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def call(self, *args: bytes) -> Reply:
        """Send one command and wait for its reply; RespError for an error reply,
        ConnectionError (or OSError) when Redis cannot be reached."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connected()
        return await _send(protocol, encode(*args))

    async def _connected(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self._tls else None
        connect = loop.create_connection(_Protocol, self._host, self._port, ssl=context)
        _, protocol = await asyncio.wait_for(connect, self._connect_timeout)
        for command in self._setup:
            await _send(protocol, command)
        self._protocol = protocol
        return protocol

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


async def _send(protocol: _Protocol, command: bytes) -> Reply:
    if protocol.lost is not None or protocol.transport is None:
        raise ConnectionError(str(protocol.lost))
    waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
    protocol.waiters.append(waiter)
    protocol.transport.write(command)
    return await waiter
