"""A tenant flooding ingest: `python -m tests.security.flood URL KEY CONNECTIONS`.

Each of CONNECTIONS keep-alive connections sends 1,000-event batches of new ids as fast as
ingest answers, ignoring Retry-After (a hostile client), until standard input closes (or
`MAX_S` passed); then the process prints its statuses as JSON (`{"202": n, "429": m, ...}`)
on stdout. It runs in a process of its own
so that its CPU can be kept off ingest's core and its threads never hold the GIL of the
process measuring another tenant's latency.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import Counter

import orjson

from bench.loadgen import Client, encode_request, run_loop

BATCH = 1000
MAX_S = 300.0


def batch(worker: int, n: int) -> bytes:
    """One 1,000-event batch whose ids no other batch of this flood uses."""
    return orjson.dumps(
        [
            {"id": f"flood-{worker}-{n}-{i}", "customer": "f", "meter": "api_calls"}
            for i in range(BATCH)
        ]
    )


async def flood(url: str, key: str, connections: int, stop: threading.Event) -> Counter[int]:
    host, port = url.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {key}"}
    statuses: Counter[int] = Counter()
    until = time.monotonic() + MAX_S

    async def worker(w: int) -> None:
        client, n = Client(host, int(port), timeout=30), 0
        while not stop.is_set() and time.monotonic() < until:
            raw = encode_request("POST", "/v1/events", batch(w, n), host=host, headers=headers)
            statuses[(await client.send(raw)).status] += 1
            n += 1
        await client.close()

    await asyncio.gather(*(worker(w) for w in range(connections)))
    return statuses


def main(argv: list[str]) -> int:
    url, key, connections = argv[0], argv[1], int(argv[2])
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    statuses = run_loop(flood(url, key, connections, stop))
    sys.stdout.write(orjson.dumps({str(k): v for k, v in statuses.items()}).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
