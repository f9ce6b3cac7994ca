"""A connection's first request head, waited for cheaply before the HTTP protocol is built.

A client may open a connection and send its head slowly, or never finish it (slowloris), for
as long as the head deadline allows. uvicorn's protocol object for a connection is heavy: the
protocol and its attributes, an httptools parser holding bound methods for its callbacks, flow
control with an `asyncio.Event`, a pipeline deque, about 20 objects the garbage collector tracks.
Thousands of connections held that way are scanned by every collection of the generations they
reached: with 2,000 slowloris connections a single collection held ingest's event loop for
20-30 ms, and every one of the ~650 connections a second an attacker reopens as they are cut
built and dropped that object.

`HeadFirst` is what a connection is until its first head has arrived: a slotted object with its
transport, the bytes so far and the head deadline. When the head is complete (a blank line), or
larger than the limit, it builds the real protocol, hands it the transport and the bytes, and
steps aside; from then on the real protocol (with `GuardMixin`) guards every request, the first
head's deadline still running from the connection's opening. A head not complete by its
deadline gets 408 and the connection ends as `GuardMixin` ends it (answer, our side shut, the
client's bytes read and dropped for a while). A client that sends its head at once, as clients
do, costs one extra object per connection, not per request. It counts among the server's
connections (the connection cap, graceful shutdown close it), like the protocol it stands for.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar, Protocol, cast

END_OF_HEAD = b"\r\n\r\n"


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


class HeadFirst(asyncio.Protocol):
    """Stands for `protocol` until the connection's first head has arrived (see the module
    docstring); build a bound class with `head_first`. uvicorn makes one per connection with
    the keyword arguments its protocols take."""

    protocol: ClassVar[type[Any]]
    limits: ClassVar[HeadLimits]
    refusal: ClassVar[Refusal]
    __slots__ = ("_args", "_due", "_head", "_lingered", "_loop", "_timer", "_transport")

    def __init__(self, **kwargs: Any) -> None:
        self._args = kwargs
        self._head = b""
        self._due = 0.0  # set when the connection is taken; a closed one is past due
        self._timer: asyncio.TimerHandle | None = None
        self._lingered = -1  # >= 0 once refused: the bytes read and dropped since
        self._loop = asyncio.get_event_loop() if kwargs.get("_loop") is None else kwargs["_loop"]

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
        self._due = self._loop.time() + timeout * (1.0 + self.refusal.spread * random.random())
        self._timer = self._loop.call_at(self._due, self._expired)

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

    def _expired(self) -> None:
        self._timer = None
        transport = self._transport
        if transport.is_closing():
            return
        self._lingered, self._head = 0, b""
        transport.write(self.refusal.timeout_answer(self.limits.header_timeout_s))
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._timer = self._loop.call_later(self.refusal.linger_s, transport.close)

    def eof_received(self) -> bool | None:
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._connections.discard(self)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: no request has begun here, so close."""
        self._transport.close()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def head_first(protocol: type[Any], limits: HeadLimits, refusal: Refusal) -> type[HeadFirst]:
    """A `HeadFirst` class standing for `protocol` (pass it to uvicorn as `http=`)."""
    attrs = {"protocol": protocol, "limits": limits, "refusal": refusal, "__slots__": ()}
    return type(f"HeadFirst{protocol.__name__}", (HeadFirst,), attrs)
