"""Demo step: a background thread sending a steady stream of usage through the SDK.

Five customers call `api_calls` and spend `tokens` at about 20 events per second until the
stack stops; the SDK batches and retries as any app's would.
"""

from __future__ import annotations

import random
import threading

from meterline_devstack.demo_context import DemoContext, out
from meterline_sdk import Meterline

CUSTOMERS = [f"cust_{i}" for i in range(1, 6)]
EVENTS_PER_SECOND = 20


def run(ctx: DemoContext) -> None:
    url = ctx.stack.urls.get("ingest")
    if url is None:
        out("demo traffic: no ingest service in this stack; skipped")
        return
    client = Meterline(url, ctx.keys["ingest"], flush_interval=0.5)
    stop = ctx.stack.stopping
    thread = threading.Thread(target=_stream, args=(client, stop), name="demo-traffic", daemon=True)
    thread.start()
    out(f"demo traffic: ~{EVENTS_PER_SECOND} events/s for {len(CUSTOMERS)} customers -> {url}")


def _stream(client: Meterline, stop: threading.Event) -> None:
    """Send until the stack stops, then flush what is buffered."""
    rng = random.Random(7)
    while not stop.wait(1 / EVENTS_PER_SECOND):
        customer = rng.choice(CUSTOMERS)
        client.record(customer, "api_calls", properties={"endpoint": rng.choice(["/a", "/b"])})
        if rng.random() < 0.3:
            client.record(customer, "tokens", value=rng.randint(100, 2000))
    client.close()
