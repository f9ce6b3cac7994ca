"""The in-memory store, with optional JSON persistence to one file.

All mutation happens on the server's event loop (handlers are synchronous functions called
from async endpoints), so the store needs no locks. `save` writes the whole state atomically
(temporary file, then rename) so a crash never leaves a torn file.

With `--state-file`, the whole state (objects, meter events, sessions, idempotency keys,
endpoints, deliveries, clock offset) is written after each mutating request and at shutdown,
and loaded again at start. The request log is not saved.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .errors import not_found

JSON = dict[str, Any]

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking random id such as `cus_4Fh...`."""
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass
class Store:
    """Everything the emulator remembers.

    `objects[kind][id]` holds API objects in creation order (lists answer newest first).
    `meter_events` holds every received meter event with its fate (`status`: accepted,
    dropped, canceled, invalid); `identifiers` maps an identifier to its index there.
    `event_index` (derived, not persisted) lists the records that name a meter and a customer
    per (meter id, customer), in `meter_events` order, so a summary reads one customer's events
    on one meter instead of every stored event. It holds the very record dicts, and catches up
    with records appended to `meter_events` when read (`events_of`), so records changed or
    added in place (tests inject faults that way) are seen as they are now.
    `requests` (the request log) is not persisted.
    """

    objects: dict[str, dict[str, JSON]] = field(default_factory=dict)
    meter_events: list[JSON] = field(default_factory=list)
    identifiers: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, JSON] = field(default_factory=dict)
    idempotency: dict[str, JSON] = field(default_factory=dict)
    webhook_endpoints: dict[str, JSON] = field(default_factory=dict)
    deliveries: list[JSON] = field(default_factory=list)
    requests: list[JSON] = field(default_factory=list)
    clock_offset: float = 0.0
    event_index: dict[tuple[str, str], list[JSON]] = field(default_factory=dict)
    indexed: int = 0

    def table(self, kind: str) -> dict[str, JSON]:
        """The objects of one kind (`customer`, `price`, `billing.meter`, ...)."""
        return self.objects.setdefault(kind, {})

    def put(self, kind: str, obj: JSON) -> JSON:
        """Insert or replace `obj` under its id and return it."""
        self.table(kind)[obj["id"]] = obj
        return obj

    def get(self, kind: str, object_id: str, label: str | None = None, param: str = "id") -> JSON:
        """The object, or a 404 `resource_missing` naming `label` (default: `kind`)."""
        obj = self.table(kind).get(object_id)
        if obj is None:
            raise not_found(label or kind, object_id, param)
        return obj

    def find(self, kind: str, object_id: str) -> JSON | None:
        """The object or None."""
        return self.table(kind).get(object_id)

    def events_of(self, meter: str, customer: str) -> list[JSON]:
        """The records of `customer` on `meter` (as tagged when recorded), in the order they
        were received. Indexes new records first: O(new records + the records returned)."""
        if self.indexed > len(self.meter_events):  # the list was replaced by a shorter one
            self.event_index, self.indexed = {}, 0
        for record in self.meter_events[self.indexed :]:
            tagged, who = record.get("meter"), record.get("customer")
            if tagged is not None and who is not None:  # else rejected before it had a meter
                self.event_index.setdefault((tagged, who), []).append(record)
        self.indexed = len(self.meter_events)
        return self.event_index.get((meter, customer), [])

    def to_json(self) -> bytes:
        """Serialize the persistent part of the state."""
        return orjson.dumps(
            {
                "objects": self.objects,
                "meter_events": self.meter_events,
                "sessions": self.sessions,
                "idempotency": self.idempotency,
                "webhook_endpoints": self.webhook_endpoints,
                "deliveries": self.deliveries,
                "clock_offset": self.clock_offset,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Store:
        """Rebuild a store from `to_json` output, re-deriving the identifier index."""
        data = orjson.loads(raw)
        store = cls(
            objects=data.get("objects", {}),
            meter_events=data.get("meter_events", []),
            sessions=data.get("sessions", {}),
            idempotency=data.get("idempotency", {}),
            webhook_endpoints=data.get("webhook_endpoints", {}),
            deliveries=data.get("deliveries", []),
            clock_offset=float(data.get("clock_offset", 0.0)),
        )
        for index, record in enumerate(store.meter_events):
            store.identifiers[record["identifier"]] = index
        return store

    def save(self, path: Path) -> None:
        """Write the state to `path` atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_json())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path | None) -> Store:
        """The state saved at `path`, or an empty store when there is none."""
        if path is None or not path.exists():
            return cls()
        return cls.from_json(path.read_bytes())
