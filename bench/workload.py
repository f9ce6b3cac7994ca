"""Synthetic usage events shared by the ceilings, the baseline and the load generators.

Events look like what apps send to ingest: time-ordered unique ids, a few customers and meters,
small integer values (so sums are exact in floating point), timestamps near now.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

METERS = ("api_calls", "tokens")


def event_id(prefix: str, n: int) -> str:
    """A unique, time-ordered id: `prefix` then a zero-padded sequence number."""
    return f"{prefix}-{n:012d}"


def make_events(
    count: int,
    *,
    prefix: str | None = None,
    customers: int = 50,
    meters: Sequence[str] = METERS,
    seed: int = 7,
    now_ms: int | None = None,
) -> list[dict[str, Any]]:
    """`count` native events with distinct ids, spread over `customers` and `meters`."""
    rng = random.Random(seed)
    prefix = prefix or uuid.uuid4().hex[:12]
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    return [
        {
            "id": event_id(prefix, i),
            "customer": f"cust_{rng.randrange(customers)}",
            "meter": meters[rng.randrange(len(meters))],
            "value": rng.randint(1, 10),
            "timestamp": now_ms - rng.randrange(60_000),
        }
        for i in range(count)
    ]


def batches(events: Sequence[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(events[i : i + size]) for i in range(0, len(events), size)]


def body(events: Sequence[dict[str, Any]] | dict[str, Any]) -> bytes:
    """The JSON body of one request: a single event or an array."""
    return orjson.dumps(events)
