"""Verified Stripe webhook events: parsed into a typed event, stored once, or kept as refused.

`parse_event` reads a body whose signature has been checked. It parses with orjson, which
refuses nesting deeper than 1,024 levels without recursing in Python, and checks the few
fields Meterline reads; anything else raises `InvalidWebhook` (400) naming the problem.
`WebhookEventStore` records each event id once (`stripe_webhook_events`) and keeps refused
bodies (`stripe_webhook_rejects`): by body hash, with the reason, the first 64 KiB of the body
and how many times it was delivered, so an operator can inspect what Stripe sent.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from meterline.errors import MeterlineError
from meterline.inputs import has_control

SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    }
)
INVOICE_EVENTS = frozenset({"invoice.paid", "invoice.payment_failed"})
KEPT_BYTES = 64 * 1024
MAX_ID = 255
JSON = dict[str, Any]


class InvalidWebhook(MeterlineError):
    """A verified webhook that cannot be applied: malformed, or naming a subscription whose data
    breaks a rule. Answered 400 and kept (`WebhookEventStore.reject`)."""

    status = 400
    code = "invalid_webhook"


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """The parts of a Stripe event Meterline reads; `subscription_id` is the subscription a
    subscription or invoice event concerns (None for other types, or an invoice without one)."""

    id: str
    type: str
    created: int
    object: JSON
    subscription_id: str | None

    @property
    def shows_past_due(self) -> bool:
        return self.type == "invoice.payment_failed" or self.object.get("status") == "past_due"


def parse_event(payload: bytes) -> StripeEvent:
    """The event in a verified body; raises InvalidWebhook saying what is wrong."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidWebhook(f"the body is not JSON (or nests too deep): {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidWebhook("the body is not a Stripe event (a JSON object)")
    event_id, type_ = _text(doc, "id"), _text(doc, "type")
    created = doc.get("created", 0)
    if not isinstance(created, int) or isinstance(created, bool) or not 0 <= created < 2**63:
        raise InvalidWebhook("created: must be a Unix time in seconds")
    data = doc.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise InvalidWebhook("data.object: missing, or not an object")
    return StripeEvent(event_id, type_, created, obj, _subscription_id(type_, obj))


def event_id_of(payload: bytes) -> str | None:
    """The body's event id when one can be read safely, for the record of a refusal."""
    try:
        doc = orjson.loads(payload)
        return _text(doc, "id") if isinstance(doc, dict) else None
    except (orjson.JSONDecodeError, InvalidWebhook):
        return None


def _text(doc: JSON, field: str, where: str = "") -> str:
    value = doc.get(field)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID or has_control(value):
        name = f"{where}{field}"
        raise InvalidWebhook(f"{name}: must be a string of 1-{MAX_ID} printable characters")
    return value


def _subscription_id(type_: str, obj: JSON) -> str | None:
    if type_ in SUBSCRIPTION_EVENTS:
        return _text(obj, "id", "data.object.")
    if type_ not in INVOICE_EVENTS:
        return None
    parent = _mapping(obj, "parent", "data.object.")
    details = _mapping(parent, "subscription_details", "data.object.parent.")
    holder = details if details.get("subscription") else obj
    found = holder.get("subscription")
    if found is None:
        return None
    if isinstance(found, dict):
        return _text(found, "id", "data.object.subscription.")
    return _text(holder, "subscription", "data.object.")


def _mapping(doc: JSON, field: str, where: str) -> JSON:
    value = doc.get(field)
    if value is not None and not isinstance(value, dict):
        raise InvalidWebhook(f"{where}{field}: must be an object")
    return value or {}


@dataclass(frozen=True, slots=True)
class RejectedWebhook:
    body_sha256: str
    event_id: str | None
    size: int
    reason: str
    attempts: int
    first_seen: datetime
    last_seen: datetime


class WebhookEventStore(abc.ABC):
    @abc.abstractmethod
    def record(self, event_id: str, type_: str, created: int) -> bool:
        """True when the event still needs processing (new, or an earlier attempt failed)."""

    @abc.abstractmethod
    def processed(self, event_id: str) -> None: ...

    @abc.abstractmethod
    def reject(self, payload: bytes, event_id: str | None, reason: str) -> None:
        """Keep a refused body; the same body again counts one more attempt."""

    @abc.abstractmethod
    def rejected(self, limit: int = 100) -> list[RejectedWebhook]:
        """Refused bodies, the most recently seen first."""


class MemoryWebhookEventStore(WebhookEventStore):
    def __init__(self) -> None:
        self.events: dict[str, bool] = {}
        self.rejects: dict[str, RejectedWebhook] = {}

    def record(self, event_id: str, type_: str, created: int) -> bool:
        return not self.events.setdefault(event_id, False)

    def processed(self, event_id: str) -> None:
        self.events[event_id] = True

    def reject(self, payload: bytes, event_id: str | None, reason: str) -> None:
        digest, now = hashlib.sha256(payload).hexdigest(), datetime.now(UTC)
        seen = self.rejects.get(digest)
        first, attempts = (seen.first_seen, seen.attempts + 1) if seen else (now, 1)
        self.rejects[digest] = RejectedWebhook(
            digest, event_id, len(payload), reason, attempts, first, now
        )

    def rejected(self, limit: int = 100) -> list[RejectedWebhook]:
        found = sorted(self.rejects.values(), key=lambda r: r.last_seen, reverse=True)
        return found[:limit]


def printable(text: str) -> str:
    """`text` with every control character replaced by `?` (for stored reasons)."""
    return "".join("?" if has_control(c) else c for c in text)
