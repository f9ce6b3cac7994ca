"""Scenario 8: bad input. Every malformed request must get a 4xx (never a 2xx, never a 5xx),
no invalid event may reach the ledger, and no tenant's key may write into another tenant.

Every fuzzed event id starts with a per-run prefix, so "0 invalid accepted" is checked in
Postgres (no ledger row with that prefix, any tenant), not only from the status codes. Valid
control traffic from two tenants runs beside it and must be counted under its own tenant only.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson

from bench.loadgen import Client, encode_request, run_loop
from bench.reliability.traffic import Plan
from bench.reliability.world import Result, Tenant, World

Case = tuple[str, bytes]


def _event(prefix: str, i: int, **override: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": f"{prefix}{i}",
        "customer": "cust_1",
        "meter": "api_calls",
        "value": 1,
        "timestamp": int(time.time() * 1000),
    }
    event.update(override)
    return event


def bad_events(prefix: str) -> Iterator[tuple[str, Any]]:
    """(name, JSON document) for bodies that parse but hold an invalid event."""
    now = int(time.time() * 1000)
    fields: list[tuple[str, dict[str, Any]]] = [
        ("negative value", {"value": -1}),
        ("huge value", {"value": 1e16}),
        ("value as string", {"value": "5"}),
        ("value as bool", {"value": True}),
        ("value as object", {"value": {"n": 1}}),
        ("timestamp text", {"timestamp": "yesterday"}),
        ("timestamp no offset", {"timestamp": "2026-11-21T10:15:00"}),
        ("timestamp bad date", {"timestamp": "2026-13-45T10:15:00Z"}),
        ("timestamp too old", {"timestamp": now - 40 * 86_400_000}),
        ("timestamp future", {"timestamp": now + 86_400_000}),
        ("timestamp huge", {"timestamp": 10**18}),
        ("timestamp negative", {"timestamp": -5}),
        ("customer empty", {"customer": ""}),
        ("customer long", {"customer": "c" * 129}),
        ("customer list", {"customer": ["a"]}),
        ("meter unknown", {"meter": "no_such_meter"}),
        ("meter int", {"meter": 7}),
        ("properties string", {"properties": "x"}),
        ("properties 33 keys", {"properties": {f"k{i}": i for i in range(33)}}),
        ("unknown field tenant", {"tenant": 1}),
        ("control chars", {"customer": "a\x00b"}),
    ]
    for i, (name, override) in enumerate(fields):
        yield name, _event(prefix, i, **override)
    yield "id too long", _event(prefix, 0, id=prefix + "x" * 200)
    yield "id empty", _event(prefix, 0, id="")
    yield "id int", _event(prefix, 0, id=12345)
    yield "id missing", {k: v for k, v in _event(prefix, 0).items() if k != "id"}
    batch = [_event(prefix, 100 + i) for i in range(10)] + [_event(prefix, 200, value=-3)]
    yield "batch with one bad event", batch
    yield "batch of 1001", [_event(prefix, 1000 + i) for i in range(1001)]
    yield "string body", "hello"
    yield "number body", 42
    yield "null body", None


def raw_bodies(prefix: str) -> Iterator[tuple[str, bytes, str]]:
    """(name, body, content type) for bodies that are not valid JSON events at all."""
    good = orjson.dumps(_event(prefix, 900))
    yield "NaN literal", good.replace(b'"value":1', b'"value":NaN'), "application/json"
    yield "Infinity literal", good.replace(b'"value":1', b'"value":Infinity'), "application/json"
    yield "1e400", good.replace(b'"value":1', b'"value":1e400'), "application/json"
    yield "truncated JSON", good[:-5], "application/json"
    yield "not JSON", b"this is not json", "application/json"
    yield "deep nesting", b"[" * 5000 + b"]" * 5000, "application/json"
    yield "oversized body", b"[" + b'"x",' * 600_000 + b'"x"]', "application/json"
    yield "wrong content type", good, "text/plain"
    yield "NDJSON bad line", good + b"\n{not json}\n", "application/x-ndjson"
    yield (
        "CloudEvent no type",
        orjson.dumps({"specversion": "1.0", "id": prefix + "ce"}),
        ("application/cloudevents+json"),
    )


def cases(prefix: str, tenant: Tenant, host: str) -> Iterator[Case]:
    """Every bad request, pre-encoded."""
    auth = {"Authorization": f"Bearer {tenant.keys['ingest']}"}

    def post(body: bytes, ctype: str = "application/json", headers: dict[str, str] = auth) -> bytes:
        return encode_request(
            "POST", "/v1/events", body, host=host, headers=headers, content_type=ctype
        )

    for name, doc in bad_events(prefix):
        yield name, post(orjson.dumps(doc))
    for name, body, ctype in raw_bodies(prefix):
        yield name, post(body, ctype)
    good = orjson.dumps(_event(prefix, 950))
    yield "no Authorization", post(good, headers={})
    yield "garbage key", post(good, headers={"Authorization": "Bearer mlk_nope_nope"})
    yield "Basic scheme", post(good, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    yield "revoked key", post(good, headers={"Authorization": f"Bearer {tenant.revoked_key}"})
    yield "read-scope key", post(good, headers={"Authorization": f"Bearer {tenant.keys['read']}"})
    yield "admin-scope key", post(good, headers={"Authorization": f"Bearer {tenant.keys['admin']}"})


async def _fire(host: str, port: int, requests: list[Case]) -> list[tuple[str, int, bytes]]:
    client = Client(host, port, timeout=30)
    answers = []
    for name, raw in requests:
        response = await client.send(raw)
        answers.append((name, response.status, response.body[:160]))
    await client.close()
    return answers


def fuzzing(world: World) -> Result:
    """8: bad input of every kind; valid traffic of two tenants beside it."""
    result = Result(8, "bad input fuzzing")
    tenant_a, tenant_b = world.tenant("fuzza"), world.tenant("fuzzb")
    prefix = f"fz{uuid.uuid4().hex[:6]}-"
    host, port = world.ingest
    answers = run_loop(_fire(host, port, list(cases(prefix, tenant_a, host))))
    ledgers = [world.ledger(tenant_a), world.ledger(tenant_b)]
    for tenant, ledger in zip((tenant_a, tenant_b), ledgers, strict=True):
        world.send(tenant, ledger, Plan(2_000, connections=4))
    accepted = [(n, s) for n, s, _ in answers if not 400 <= s < 500]
    statuses = Counter(s for _, s, _ in answers)
    for tenant, ledger in zip((tenant_a, tenant_b), ledgers, strict=True):
        world.settle(tenant, ledger)
    verdicts = [world.verdict(t, lg) for t, lg in zip((tenant_a, tenant_b), ledgers, strict=True)]
    leaked = world.observer.ids_like(prefix.replace("_", r"\_") + "%")
    result.sent = len(answers) + sum(v.sent for v in verdicts)
    result.acked = sum(v.acked for v in verdicts)
    result.counted = sum(v.counted for v in verdicts)
    result.lost = sum(v.lost for v in verdicts)
    result.doubled = sum(v.doubled for v in verdicts)
    cross = sum(v.unknown for v in verdicts)
    result.ok = not (accepted or leaked or cross) and all(v.ok for v in verdicts)
    result.notes.append(
        f"{len(answers)} bad requests: "
        + ", ".join(f"{s}x{c}" for s, c in sorted(statuses.items()))
    )
    result.notes.append(
        f"invalid accepted {leaked}, non-4xx answers {len(accepted)}, cross-tenant {cross}"
    )
    result.notes += [f"non-4xx: {n} -> {s}" for n, s in accepted[:6]]
    return result
