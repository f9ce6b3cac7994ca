"""The HTTP/1.1 protocol as served: uvicorn's httptools protocol, taking POST /v1/events itself.

Per single-event request, uvicorn's ASGI machinery costs about as much CPU as ingest's own
work: a `RequestResponseCycle` and an `asyncio.Event`, message dicts for each `receive` and
`send`, header checks, and two `send` system calls (head, then body). `EventsProtocol` hands a
POST /v1/events to the same `EventsEndpoint.answer` that the ASGI path calls (same auth,
limits, errors, metrics), reads the body from the parser's callbacks, and writes the answer
with one system call, in the bytes the ASGI path sends (status line, uvicorn's default
headers, `content-length`, `content-type`, `Retry-After`, body).

It takes a request only on an idle kept-alive HTTP/1.1 connection, without `Expect:
100-continue`, access log, root path or query string, and under uvicorn's concurrency limit;
everything else (other routes, pipelined requests queued behind one in progress, the 503 of
`limit_concurrency`) takes uvicorn's path unchanged. While it answers, its `_Exchange` stands
in for uvicorn's cycle (`self.cycle`), so uvicorn's own callbacks keep working as for any
request: body bytes and the end of the message land in it (reading pauses past uvicorn's
high-water mark), a lost connection marks it disconnected, a graceful shutdown lets it finish
and then closes the connection, and a request pipelined behind it waits for it.

This relies on `HttpToolsProtocol`'s per-connection state (`cycle`, `pipeline`, `flow`,
`parser`, `url`, `headers`, `tasks`, `on_response_complete`); tests/ingest/test_protocol.py
runs it in a real uvicorn server, so an upgrade that changes those fails the tests rather than
the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ingest.endpoint import PATH, EventsEndpoint

_PATH = PATH.encode()
_TYPE = b"content-type: application/json\r\n"
_FAILED = (
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\nconnection: close\r\n"
    b"\r\nInternal Server Error"
)


class _Exchange:
    """One request taken by `EventsProtocol`: what uvicorn's protocol reads and writes on its
    cycle (`body`, `more_body`, `disconnected`, `response_complete`, `keep_alive`,
    `message_event.set()`), and the body's chunks as they arrive."""

    def __init__(self, flow: FlowControl, loop: asyncio.AbstractEventLoop) -> None:
        self.body = bytearray()
        self.more_body = True
        self.disconnected = False
        self.response_complete = False
        self.keep_alive = True
        self.message_event = self
        self._flow, self._loop = flow, loop
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        """uvicorn's signal that body bytes, the end of the body, or a disconnect arrived."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's chunks; ClientDisconnect if the client leaves first (as the ASGI path)."""
        while True:
            if self.disconnected:
                raise ClientDisconnect()
            if self.body:
                chunk, self.body = bytes(self.body), bytearray()
                yield chunk
            elif not self.more_body:
                return
            else:
                self._flow.resume_reading()
                self._waiter = self._loop.create_future()
                await self._waiter
                self._waiter = None


class EventsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` taking POST /v1/events itself; build the class with
    `protocol_for(endpoint)` and pass it to uvicorn as `http=`."""

    endpoint: EventsEndpoint

    def on_headers_complete(self) -> None:
        if not self._may_take():
            super().on_headers_complete()
            return
        exchange = _Exchange(self.flow, self.loop)
        self.cycle = exchange  # type: ignore[assignment]
        task = self.loop.create_task(self._serve(exchange, self.headers))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _may_take(self) -> bool:
        parser = self.parser
        idle = self.cycle is None or self.cycle.response_complete
        limit = self.limit_concurrency
        return (
            idle
            and not self.pipeline
            and self.url == _PATH
            and parser.get_method() == b"POST"
            and parser.get_http_version() == "1.1"
            and parser.should_keep_alive()
            and not parser.should_upgrade()
            and not self.expect_100_continue
            and not self.access_log
            and not self.root_path
            and (limit is None or max(len(self.connections), len(self.tasks)) < limit)
        )

    async def _serve(self, exchange: _Exchange, headers: list[tuple[bytes, bytes]]) -> None:
        try:
            status, body, extra = await self.endpoint.answer(headers, exchange.chunks())
        except Exception as exc:  # as uvicorn does for an ASGI app that raises
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            exchange.keep_alive = False
            self._write(exchange, [STATUS_LINE[500], *self._defaults(), _FAILED])
            return
        if self.flow.write_paused and not exchange.disconnected:
            await self.flow.drain()
        parts = [STATUS_LINE[status], *self._defaults()]
        parts += [b"content-length: %d\r\n" % len(body), _TYPE]
        for name, value in extra.items():
            parts += [name.lower().encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n"]
        if not exchange.keep_alive:
            parts.append(b"connection: close\r\n")
        self._write(exchange, [*parts, b"\r\n", body])

    def _defaults(self) -> list[bytes]:
        return [b"%s: %s\r\n" % pair for pair in self.server_state.default_headers]

    def _write(self, exchange: _Exchange, parts: list[bytes]) -> None:
        """Send the whole answer in one write, then hand the connection back to uvicorn."""
        if exchange.disconnected:
            return
        self.transport.write(b"".join(parts))
        exchange.response_complete = True
        if not exchange.keep_alive:
            self.transport.close()
        self.on_response_complete()


def protocol_for(endpoint: EventsEndpoint) -> type[EventsProtocol]:
    """An `EventsProtocol` class bound to `endpoint` (uvicorn makes one per connection)."""
    attrs: dict[str, Any] = {"endpoint": endpoint}
    return type("BoundEventsProtocol", (EventsProtocol,), attrs)
