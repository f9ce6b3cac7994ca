"""The event types Meterline announces and the one way a notification becomes a message.

`EVENT_TYPES` is the closed list (endpoint filters are checked against it). A `Notification`
becomes one message: a `msg_id` (the `webhook-id` header, the receivers' idempotency key) and a
JSON body `{"type", "timestamp", "data"}` serialised once, so every attempt sends and signs the
same bytes. `msg_id` derives from the notification's `key` (what the event is about) when it has
one, so writing the same event twice keeps one message; otherwise it is random and the caller's
transaction is what makes it happen once.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

EVENT_TYPES: dict[str, str] = {
    "reconciliation.alert_raised": "nightly reconciliation found a new discrepancy",
    "reconciliation.alert_resolved": "a reconciliation alert was resolved (by finance or a run)",
    "dlq.event_dead_lettered": "the aggregator sent a message it can never count to the DLQ",
    "subscription.changed": "a customer's plan, status or billing period changed",
    "entitlement.threshold_reached": "a customer's usage of a feature reached a catalog threshold",
    "entitlement.limit_exceeded": "a consume was refused at a limit, or overage passed it",
    "payment.failed": "an attempt to pay a customer's invoice failed",
    "dunning.notice": "a payment failed for the first time: the link that pays the invoice",
    "dunning.reminder": "the invoice is still unpaid some days after the first failure",
    "dunning.final_warning": "the next automatic retry is the last before the downgrade",
    "dunning.downgraded": "the final retry failed: the catalog's fallback plan applies",
    "dunning.recovery_offer": "some days after the downgrade: paying restores the plan",
    "dunning.recovered": "the invoice was paid: the sequence is over and the plan restored",
}


@dataclass(frozen=True, slots=True)
class Notification:
    """One event for one tenant. `customer` orders deliveries (one customer's messages reach
    each endpoint in the order they were written); `key`, when given, makes the id stable."""

    tenant_id: int
    type: str
    occurred_at: datetime
    data: Mapping[str, Any]
    customer: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}")

    @property
    def msg_id(self) -> str:
        if self.key is None:
            return "msg_" + uuid.uuid4().hex
        digest = hashlib.sha256(f"{self.tenant_id}\x1f{self.type}\x1f{self.key}".encode())
        return "msg_" + base64.b32encode(digest.digest()[:20]).decode().lower()

    @property
    def ordering_key(self) -> str:
        return self.customer or ""

    def body(self) -> bytes:
        return orjson.dumps(
            {"type": self.type, "timestamp": iso(self.occurred_at), "data": self.data},
            default=_jsonable,
        )


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    """Decimals (units, money) go out as JSON numbers."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")
