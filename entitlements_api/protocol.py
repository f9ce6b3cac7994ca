"""The HTTP/1.1 protocol as served: uvicorn's httptools protocol, answering cached checks inline.

Most of a cached check's cost in the ASGI path is the server's, not the app's: per request
uvicorn builds a `RequestResponseCycle`, an `asyncio.Event` and a task, and writes the head and
the body of the response with two `send` system calls. `CheckProtocol` answers a plain check
whose decision is cached (`CheckFastPath.answer_now`) as soon as its head is parsed, with one
write of bytes identical to what the ASGI path sends (status line, uvicorn's default headers,
`content-length`, `content-type`, body). Everything else takes uvicorn's path unchanged,
including checks that need a decision (a miss), errors, and any request while an earlier
request of the same connection is still being answered (pipelining keeps its order).

This subclasses uvicorn's `HttpToolsProtocol` and relies on its per-connection state (`cycle`,
`pipeline`, `flow`, `parser`, `url`, `headers`, `on_response_complete`); the tests in
`tests/entitlements/test_protocol.py` run it in a real uvicorn server, so an upgrade of uvicorn
that changes those fails them rather than the service.

A cached check does not even reach ASGI: `python -m entitlements_api` serves with
`protocol.CheckProtocol` (uvicorn's httptools protocol, subclassed), which answers it while
parsing the request, with one write of the same bytes (`tests/entitlements/test_protocol.py`,
real uvicorn, raw sockets: byte equality, pipelining order, everything else through ASGI). It
relies on uvicorn internals, so those tests guard uvicorn upgrades.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from entitlements_api.fastpath import CheckFastPath

_HEAD = STATUS_LINE[200]
_TYPE = b"content-type: application/json\r\n\r\n"


class CheckProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with plain cached checks answered inline; build the class with
    `protocol_for(fast)` and pass it to uvicorn as `http=`."""

    fast: CheckFastPath

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answered = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._answered = False

    def on_headers_complete(self) -> None:
        body = self._inline_body() if self._may_inline() else None
        if body is None:
            super().on_headers_complete()
            return
        self._answered = True
        head = [_HEAD]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-length: ", str(len(body)).encode(), b"\r\n", _TYPE, body]
        self.transport.write(b"".join(head))
        self.on_response_complete()

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._answered:
            super().on_message_complete()

    def _may_inline(self) -> bool:
        """A GET over a kept-alive HTTP/1.1 connection with nothing else in progress on it, no
        access log, no concurrency limit, no root path, a URL without query or escapes."""
        parser = self.parser
        idle = self.cycle is None or self.cycle.response_complete
        return (
            idle
            and not self.pipeline
            and parser.get_method() == b"GET"
            and parser.get_http_version() == "1.1"
            and parser.should_keep_alive()
            and not parser.should_upgrade()
            and not self.flow.write_paused
            and not self.access_log
            and self.limit_concurrency is None
            and not self.root_path
            and b"?" not in self.url  # a query string
            and b"%" not in self.url  # escapes: uvicorn decodes them
            and b"#" not in self.url
        )

    def _inline_body(self) -> bytes | None:
        try:
            path = self.url.decode("ascii")
        except UnicodeDecodeError:
            return None
        return self.fast.answer_now(path, _authorization(self.headers))


def _authorization(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The first Authorization header, as the ASGI path reads it."""
    for name, value in headers:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


def protocol_for(fast: CheckFastPath) -> type[CheckProtocol]:
    """A `CheckProtocol` class bound to `fast` (uvicorn instantiates it per connection)."""
    return type("BoundCheckProtocol", (CheckProtocol,), {"fast": fast})
