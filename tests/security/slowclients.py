"""Clients slow on purpose: `python -m tests.security.slowclients URL KEY SLOW_BODIES SLOWLORIS`.

SLOW_BODIES connections send a valid head with `Content-Length: 100000` and one byte of body;
SLOWLORIS connections (no key) send a head that never ends. Each is reopened as soon as ingest
cuts it, so the number open stays the same for as long as the process runs: until standard
input closes, and then until every one has been cut once (at most `GRACE_S` more). Then it
prints what it saw as JSON on stdout: `{"cut": n, "answers": {"408":
m, ...}}`, `cut` counting connections ingest ended and `answers` the status lines they got
before (`none`: closed without an answer; `res`: reset or refused).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter

import orjson

from bench.loadgen import run_loop

SLOWLORIS_HEAD = b"POST /v1/events HTTP/1.1\r\nHost: t\r\n"
GRACE_S = 30.0
"""How long, once told to stop, a client not yet cut waits for it (it is counted if it is)."""


def slow_body_head(key: str) -> bytes:
    return (
        b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: 100000\r\n\r\n["
    )


async def hold(
    host: str,
    port: int,
    payload: bytes,
    stop: asyncio.Event,
    seen: Counter[str],
    spare: set[asyncio.StreamWriter],
) -> None:
    """One slow client, reopened whenever it is cut, until `stop` is set and it has been cut at
    least once: once cut, its connection is in `spare`, which `main_async` closes at `stop`
    (and it cancels those never cut `GRACE_S` later). It waits for the server without polling:
    a timer per connection would cost the attacker CPU, on the core Redis and the broker share
    with it, for no extra pressure on the server."""
    cut_once = False
    while not (cut_once and stop.is_set()):
        answer = b""
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            if cut_once:
                spare.add(writer)
                if stop.is_set():
                    writer.close()
            while chunk := await reader.read(4096):
                answer += chunk
            spare.discard(writer)
            writer.close()
        except OSError:  # refused or reset
            answer = b"HTTP/1.1 reset"
            await asyncio.sleep(0.05)
        if not (cut_once and stop.is_set()):
            cut_once = True
            seen["cut"] += 1
            seen[answer[9:12].decode("latin-1") or "none"] += 1


async def main_async(url: str, key: str, slow_bodies: int, slowloris: int) -> Counter[str]:
    host, port = url.removeprefix("http://").split(":")
    loop, stop, seen = asyncio.get_running_loop(), asyncio.Event(), Counter[str]()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    payloads = [slow_body_head(key)] * slow_bodies + [SLOWLORIS_HEAD] * slowloris
    spare: set[asyncio.StreamWriter] = set()
    clients = [asyncio.ensure_future(hold(host, int(port), p, stop, seen, spare)) for p in payloads]
    await stop.wait()
    for writer in list(spare):
        writer.close()
    await asyncio.wait(clients, timeout=GRACE_S)
    for client in clients:
        client.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    return seen


def main(argv: list[str]) -> int:
    seen = run_loop(main_async(argv[0], argv[1], int(argv[2]), int(argv[3])))
    cut = seen.pop("cut", 0)
    sys.stdout.write(orjson.dumps({"cut": cut, "answers": dict(seen)}).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
