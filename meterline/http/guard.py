"""What a client may cost a server before it is served: deadlines and sizes, enforced in the
HTTP protocol itself, before any application code, authentication included, runs.

uvicorn's httptools protocol waits for a request's head and body as long as the client likes
(its keep-alive timeout only runs between requests, and any byte cancels it) and accepts heads
and bodies of any size. So a client that sends one byte at a time, never finishes its head, or
sends hundreds of MiB before any check, holds a connection, memory or a request slot that
others need. `guarded(protocol, limits)` puts `GuardMixin` in front of a protocol class
(uvicorn's, or a service's own subclass of it) so that:

- a request's head (request line and headers) must arrive within `header_timeout_s` of its
  first byte (of the connection's opening, for the first request); its body within
  `body_timeout_s` of the head's end. Past either deadline the client gets 408 and the
  connection is closed, at a random moment within a quarter of the deadline more
  (`DEADLINE_SPREAD`), so that connections opened together are not all cut at once;
- a head larger than `max_header_bytes` gets 431, and a body larger than `max_body_bytes` (as
  declared by Content-Length, or as it arrives) 413, and the connection is ended: nothing past
  the limit is buffered (what the client still sends is read and dropped for a few seconds, so
  that it can read the answer, then the socket closes);
- a connection opened while `max_connections` are open is closed at once. Connections waiting
  for their head hold no request slot (services count requests in progress, not connections),
  so idle or slow connections cannot refuse service to others; this cap only bounds memory and
  file descriptors. Per-client connection limits belong to the load balancer
  (deploy/k8s/components/ingress);
- until its first head has arrived, a connection is a small `HeadFirst`
  (`meterline.http.headfirst`), not the protocol: thousands of slowloris connections held open
  then cost the garbage collector, and their reopening the event loop, a fraction of what
  uvicorn's protocol objects cost.

The refusal is written by the protocol, so no application task is started for a refused request
or, when it comes mid-body, the task sees the client as disconnected.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from meterline.http.headfirst import head_first

P = TypeVar("P", bound=HttpToolsProtocol)


class HttpSettings(BaseSettings):
    """Transport limits of every HTTP service (`METERLINE_HTTP_*`)."""

    model_config = SettingsConfigDict(env_prefix="METERLINE_HTTP_", extra="ignore", frozen=True)

    header_timeout_s: float = Field(10.0, gt=0)
    """Longest a request's head may take to arrive, from its first byte."""
    body_timeout_s: float = Field(30.0, gt=0)
    """Longest a request's body may take to arrive, from the end of its head."""
    max_header_bytes: int = Field(32_768, ge=1024)
    """Largest request head (request line and headers)."""
    max_body_bytes: int = Field(1_048_576, ge=1024)
    """Largest request body, where the service sets none of its own (ingest has
    `METERLINE_INGEST_MAX_BODY_BYTES`)."""
    max_connections: int = Field(10_000, ge=16)
    """Open connections per process; one more is closed at once."""

    def limits(self, max_body_bytes: int | None = None) -> Limits:
        return Limits(
            header_timeout_s=self.header_timeout_s,
            body_timeout_s=self.body_timeout_s,
            max_header_bytes=self.max_header_bytes,
            max_body_bytes=self.max_body_bytes if max_body_bytes is None else max_body_bytes,
            max_connections=self.max_connections,
        )


@dataclass(frozen=True)
class Limits:
    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int
    max_body_bytes: int
    max_connections: int


def _answer(status: int, code: str, message: str) -> bytes:
    body = orjson.dumps({"error": code, "message": message})
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
    return STATUS_LINE[status] + head % len(body) + body


class GuardMixin:
    """Deadlines and size limits for an `HttpToolsProtocol` (see the module docstring). It must
    come first in the class's bases, so that it sees every parser callback before the protocol
    (which may take a request itself without calling `super()`)."""

    guard_limits: Limits
    head_due: float | None = None
    """When the first head is due (loop time), set by `HeadFirst` before the connection is
    handed over; None: `header_timeout_s` from the connection's opening."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        proto: Any = self
        super().connection_made(transport)  # type: ignore[misc]
        self._head_bytes = self._body_bytes = self._raw_head = 0
        self._in_head = True
        self._deadline: asyncio.TimerHandle | None = None
        self._refused, self._lingered = False, 0
        if len(proto.connections) > self.guard_limits.max_connections:
            transport.close()
            return
        due = getattr(self, "head_due", None)
        if due is None:
            self._arm(self.guard_limits.header_timeout_s, "head")
        else:  # opened earlier, waited for by `HeadFirst`: the first head's deadline holds
            self._deadline = proto.loop.call_at(due, self._expired, "head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()  # type: ignore[misc]
        self._head_bytes = self._body_bytes = self._raw_head = 0
        self._in_head = True
        if self._deadline is None:
            self._arm(self.guard_limits.header_timeout_s, "head")

    def on_url(self, url: bytes) -> None:
        if self._head_fits(len(url)):
            super().on_url(url)  # type: ignore[misc]

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_fits(len(name) + len(value) + 4):
            super().on_header(name, value)  # type: ignore[misc]

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._refused:
            return
        declared = _content_length(self._headers())
        if declared is not None and declared > self.guard_limits.max_body_bytes:
            self._refuse(413, "payload_too_large", self._too_large())
            return
        self._arm(self.guard_limits.body_timeout_s, "body")
        super().on_headers_complete()  # type: ignore[misc]

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.guard_limits.max_body_bytes:
            self._refuse(413, "payload_too_large", self._too_large())
            return
        super().on_body(body)  # type: ignore[misc]

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        super().on_message_complete()  # type: ignore[misc]

    def _count_raw_head(self, size: int) -> None:
        """Count a chunk that left a request's head unfinished: the parser keeps an unfinished
        header value to itself, and the callbacks see it only once it ends."""
        if not self._in_head or self._refused:
            return
        self._raw_head += size
        if self._raw_head > self.guard_limits.max_header_bytes:
            limit = self.guard_limits.max_header_bytes
            self._refuse(431, "headers_too_large", f"the request head is larger than {limit} bytes")

    def _head_fits(self, size: int) -> bool:
        """Count `size` bytes of head; False (and the request refused) once past the limit,
        or when it was refused already: the parser goes on through the bytes in hand, and
        every callback after a refusal is ignored."""
        if self._refused:
            return False
        self._head_bytes += size
        if self._head_bytes <= self.guard_limits.max_header_bytes:
            return True
        limit = self.guard_limits.max_header_bytes
        self._refuse(431, "headers_too_large", f"the request head is larger than {limit} bytes")
        return False

    def _too_large(self) -> str:
        return f"the body is larger than {self.guard_limits.max_body_bytes} bytes"

    def _headers(self) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = getattr(self, "headers", None) or []
        return headers

    def _arm(self, seconds: float, part: str) -> None:
        """Cut the connection `seconds` (up to `DEADLINE_SPREAD` more, at random) from now."""
        self._disarm()
        loop: asyncio.AbstractEventLoop = getattr(self, "loop")  # noqa: B009
        later = seconds * (1.0 + DEADLINE_SPREAD * random.random())
        self._deadline = loop.call_later(later, self._expired, part)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, part: str) -> None:
        self._deadline = None
        limit = (
            self.guard_limits.header_timeout_s
            if part == "head"
            else self.guard_limits.body_timeout_s
        )
        self._refuse(
            408, "request_timeout", f"the request {part} did not arrive within {limit:g} s"
        )

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)  # type: ignore[misc]
            self._count_raw_head(len(data))
            return
        self._lingered += len(data)
        if self._lingered > LINGER_BYTES:
            getattr(self, "transport").close()  # noqa: B009

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer `status` unless a response has begun, then end the connection: the
        application's request, if any, sees a disconnect; our side is shut for writing, and
        what the client still sends is read and dropped for up to `LINGER_S` and
        `LINGER_BYTES` before the socket closes. Closing at once, with the client's bytes
        unread, would reset the connection, and a client still sending its body would lose
        the answer (a lingering close, as web servers do)."""
        proto: Any = self
        self._refused, self._lingered = True, 0
        self._disarm()
        transport: asyncio.Transport = proto.transport
        if transport.is_closing():
            return
        cycle = proto.cycle
        started = cycle is not None and not cycle.response_complete and _response_started(cycle)
        if not started:
            transport.write(_answer(status, code, message))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if started or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._deadline = proto.loop.call_later(LINGER_S, transport.close)


DEADLINE_SPREAD = 0.25
"""A deadline falls due up to this fraction of it later, at random. Connections opened
together (as an attacker opens them, or as they reconnect once cut) would otherwise be cut in
the same turn of the event loop: 2,000 of them hold it for a few hundred milliseconds, and
every request in progress waits that long. Spread over a quarter of the deadline, the same cuts
interleave with other work; no client is cut before its deadline."""
LINGER_S = 5.0
"""How long a refused connection is still read (and dropped) before it closes."""
LINGER_BYTES = 16 * 2**20
"""How much a refused connection may still send before it closes (reset) at once."""


def _response_started(cycle: object) -> bool:
    return bool(getattr(cycle, "response_started", False))


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None


class _Refusal:
    """How `HeadFirst` refuses a head past its deadline: as `GuardMixin` does."""

    spread = DEADLINE_SPREAD
    linger_s = LINGER_S
    linger_bytes = LINGER_BYTES

    def timeout_answer(self, timeout_s: float) -> bytes:
        message = f"the request head did not arrive within {timeout_s:g} s"
        return _answer(408, "request_timeout", message)


def guarded(protocol: type[P], limits: Limits) -> type[asyncio.Protocol]:
    """`protocol` with `GuardMixin` in front of it, bound to `limits`, that each connection
    becomes once its first head has arrived (`meterline.http.headfirst`); pass it to uvicorn
    as `http=`."""
    attrs: dict[str, Any] = {"guard_limits": limits}
    full = type(f"Guarded{protocol.__name__}", (GuardMixin, protocol), attrs)
    return head_first(full, limits, _Refusal())
