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
import time
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
    host: str, port: int, payload: bytes, stop: threading.Event, seen: Counter[str]
) -> None:
    """One slow client, reopened whenever it is cut, until `stop` and once it has been cut at
    least once (or `GRACE_S` after `stop`)."""
    cut_once, stopped_at = False, None

    def done() -> bool:
        nonlocal stopped_at
        if not stop.is_set():
            return False
        stopped_at = stopped_at or time.monotonic()
        return cut_once or time.monotonic() - stopped_at > GRACE_S

    while not done():
        answer, ended = b"", False
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            while not done():
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), 0.5)
                except TimeoutError:
                    continue
                if not chunk:
                    ended = True
                    break
                answer += chunk
            writer.close()
        except OSError:  # refused or reset
            answer, ended = b"HTTP/1.1 reset", True
            await asyncio.sleep(0.05)
        if ended and not (cut_once and stop.is_set()):
            cut_once = True
            seen["cut"] += 1
            seen[answer[9:12].decode("latin-1") or "none"] += 1


async def main_async(url: str, key: str, slow_bodies: int, slowloris: int) -> Counter[str]:
    host, port = url.removeprefix("http://").split(":")
    stop, seen = threading.Event(), Counter[str]()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    payloads = [slow_body_head(key)] * slow_bodies + [SLOWLORIS_HEAD] * slowloris
    await asyncio.gather(*(hold(host, int(port), p, stop, seen) for p in payloads))
    return seen


def main(argv: list[str]) -> int:
    seen = run_loop(main_async(argv[0], argv[1], int(argv[2]), int(argv[3])))
    cut = seen.pop("cut", 0)
    sys.stdout.write(orjson.dumps({"cut": cut, "answers": dict(seen)}).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
