"""The HTTP ceiling: a bare ASGI app that reads the body, parses the same JSON and answers 202.

Run by `bench/ceilings.py` as `python -m uvicorn bench.bare_asgi:app`; nothing else happens per
request, so it bounds what any ingest endpoint can do on this machine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    doc = orjson.loads(b"".join(chunks) or b"null")
    accepted = len(doc) if isinstance(doc, list) else 1
    body = orjson.dumps({"accepted": accepted, "duplicates": 0})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})
