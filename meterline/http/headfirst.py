"""A connection's first request head, waited for cheaply before the HTTP protocol is built.

A client may open a connection and send its head slowly, or never finish it (slowloris), for
as long as the head deadline allows. uvicorn's protocol object for a connection is heavy: the
protocol and its attributes, an httptools parser holding bound methods for its callbacks, flow
control with an `asyncio.Event`, a pipeline deque, about 20 objects the garbage collector tracks.
Thousands of connections held that way are scanned by every collection of the generations they
reached (with 2,000 slowloris connections, a single collection held ingest's event loop for
tens of milliseconds), and every connection an attacker reopens as it is cut built and dropped
that object (bench/HISTORY.md).

`HeadFirst` is what a connection is until its first head has arrived: a slotted object with its
transport, the bytes so far and the head deadline. When the head is complete (a blank line), or
larger than the limit, it builds the real protocol, hands it the transport and the bytes, and
steps aside; from then on the real protocol (with `GuardMixin`) guards every request, the first
head's deadline still running from the connection's opening. A head not complete by its
deadline gets 408 and the connection ends as `GuardMixin` ends it (answer, our side shut, the
client's bytes read and dropped for a while). A client that sends its head at once, as clients
do, costs one extra object per connection, not per request. It counts among the server's
connections (the connection cap, graceful shutdown close it), like the protocol it stands for.

Its deadlines share timers: a connection is filed in a `Deadlines` slot of `TICK_S` (its due
time rounded up), and one loop timer per occupied slot ends every connection due in it. A
timer per connection was four more tracked objects each (the handle, libuv's timer, a context,
a bound method), so a full collection under 2,000 slowloris scans about a third less. A slot
ends its connections `CHUNK` at a time, one chunk per turn of the loop, as the connections'
own timers did at about the same rate, so a wave of deadlines never holds the loop. A deadline
is late by at most `TICK_S` (and the turns a wave takes).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar, Protocol, cast

END_OF_HEAD = b"\r\n\r\n"
TICK_S = 0.05
"""The width of a `Deadlines` slot: how late a head's deadline (or a refusal's linger) may end."""
CHUNK = 16
"""Connections a slot ends per turn of the loop (~1 ms of work: cutting one costs ~65 µs)."""


class HeadLimits(Protocol):
    @property
    def header_timeout_s(self) -> float: ...

    @property
    def max_header_bytes(self) -> int: ...

    @property
    def max_connections(self) -> int: ...


class Refusal(Protocol):
    """How a refused connection is answered and ended (`meterline.http.guard`)."""

    @property
    def spread(self) -> float: ...

    @property
    def linger_s(self) -> float: ...

    @property
    def linger_bytes(self) -> int: ...

    def timeout_answer(self, timeout_s: float) -> bytes: ...


class Deadlines:
    """The pending deadlines of one loop's `HeadFirst` connections, in slots of `TICK_S`: one
    loop timer per occupied slot calls `due()` on every connection still filed in it. Made by
    `on(loop)`, forgotten once it holds nothing."""

    _by_loop: ClassVar[dict[int, Deadlines]] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._slots: dict[int, set[HeadFirst]] = {}

    @classmethod
    def on(cls, loop: asyncio.AbstractEventLoop) -> Deadlines:
        found = cls._by_loop.get(id(loop))
        if found is None or found.loop is not loop:
            for key in [k for k, d in cls._by_loop.items() if d.loop.is_closed()]:
                del cls._by_loop[key]  # a loop stopped with deadlines pending
            found = cls._by_loop[id(loop)] = cls(loop)
        return found

    def add(self, connection: HeadFirst, at: float) -> None:
        """File `connection` to be called at `at` (loop time), or up to `TICK_S` later."""
        slot = -int(-at // TICK_S)  # rounded up
        filed = self._slots.get(slot)
        if filed is None:
            filed = self._slots[slot] = set()
            self.loop.call_at(slot * TICK_S, self._end, slot)
        filed.add(connection)

    def remove(self, connection: HeadFirst, at: float) -> None:
        filed = self._slots.get(-int(-at // TICK_S))
        if filed is not None:
            filed.discard(connection)

    def _end(self, slot: int) -> None:
        """Call up to `CHUNK` connections of `slot`; the rest on the loop's next turn, so
        that the I/O of others is served in between."""
        filed = self._slots[slot]
        for _ in range(min(CHUNK, len(filed))):
            connection = filed.pop()
            try:
                connection.due()
            except Exception as exc:  # as a timer of its own would: reported, the others go on
                self.loop.call_exception_handler({"message": "deadline failed", "exception": exc})
        if filed:
            self.loop.call_soon(self._end, slot)
            return
        del self._slots[slot]
        if not self._slots and Deadlines._by_loop.get(id(self.loop)) is self:
            del Deadlines._by_loop[id(self.loop)]


class HeadFirst(asyncio.Protocol):
    """Stands for `protocol` until the connection's first head has arrived (see the module
    docstring); build a bound class with `head_first`. uvicorn makes one per connection with
    the keyword arguments its protocols take."""

    protocol: ClassVar[type[Any]]
    limits: ClassVar[HeadLimits]
    refusal: ClassVar[Refusal]
    __slots__ = ("_args", "_deadlines", "_due", "_head", "_lingered", "_next", "_transport")

    def __init__(self, **kwargs: Any) -> None:
        self._args = kwargs
        self._head = b""
        self._due = 0.0  # set when the connection is taken; a closed one is past due
        self._next = -1.0  # when `due` is filed to be called next (loop time); -1: not filed
        self._lingered = -1  # >= 0 once refused: the bytes read and dropped since
        loop = asyncio.get_event_loop() if kwargs.get("_loop") is None else kwargs["_loop"]
        self._deadlines = Deadlines.on(loop)

    @property
    def _connections(self) -> set[Any]:
        connections: set[Any] = self._args["server_state"].connections
        return connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if len(self._connections) >= self.limits.max_connections:
            transport.close()
            return
        self._connections.add(self)
        timeout = self.limits.header_timeout_s
        loop = self._deadlines.loop
        self._due = loop.time() + timeout * (1.0 + self.refusal.spread * random.random())
        self._file(self._due)

    def data_received(self, data: bytes) -> None:
        if self._lingered >= 0:
            self._lingered += len(data)
            if self._lingered > self.refusal.linger_bytes:
                self._transport.close()
            return
        head = self._head + data
        tail = max(0, len(self._head) - len(END_OF_HEAD) + 1)
        if head.find(END_OF_HEAD, tail) >= 0 or len(head) > self.limits.max_header_bytes:
            self._hand_over(head)
        else:
            self._head = head

    def _hand_over(self, received: bytes) -> None:
        """The real protocol takes the connection, with what arrived so far."""
        self._disarm()
        self._connections.discard(self)
        protocol = self.protocol(**self._args)
        protocol.head_due = self._due
        self._transport.set_protocol(protocol)
        protocol.connection_made(self._transport)
        self._head = b""
        protocol.data_received(received)

    def due(self) -> None:
        """Called by `Deadlines` at the time filed: the head's deadline, or the end of the
        refusal's linger."""
        self._next = -1.0
        if self._lingered >= 0:
            self._transport.close()
        else:
            self._expired()

    def _expired(self) -> None:
        transport = self._transport
        if transport.is_closing():
            return
        self._lingered, self._head = 0, b""
        transport.write(self.refusal.timeout_answer(self.limits.header_timeout_s))
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._file(self._deadlines.loop.time() + self.refusal.linger_s)

    def eof_received(self) -> bool | None:
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._connections.discard(self)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: no request has begun here, so close."""
        self._transport.close()

    def _file(self, at: float) -> None:
        self._next = at
        self._deadlines.add(self, at)

    def _disarm(self) -> None:
        if self._next >= 0:
            self._deadlines.remove(self, self._next)
            self._next = -1.0


def head_first(protocol: type[Any], limits: HeadLimits, refusal: Refusal) -> type[HeadFirst]:
    """A `HeadFirst` class standing for `protocol` (pass it to uvicorn as `http=`)."""
    attrs = {"protocol": protocol, "limits": limits, "refusal": refusal, "__slots__": ()}
    return type(f"HeadFirst{protocol.__name__}", (HeadFirst,), attrs)
