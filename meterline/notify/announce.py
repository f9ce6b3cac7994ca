"""The notifications of the kernel's own changes: dead letters and subscription changes.

Each builder returns the `Notification` the change announces (or None when there is nothing to
announce); the code that makes the change publishes it in its own transaction
(`meterline.notify.outbox.publish`). The reporter's reconciliation alerts are built beside
their store (`reporter/alerts.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from meterline.notify.events import Notification

if TYPE_CHECKING:  # the entitlements package imports this module
    from meterline.entitlements.model import Subscription

SUBSCRIPTION_FIELDS = (
    "plan", "status", "current_period_start", "current_period_end", "past_due_since",
    "cancel_at_period_end",
)  # fmt: skip


def dead_lettered(
    key: bytes | None,
    value: bytes | None,
    reason: str,
    topic: str,
    incarnation: str,
    partition: int,
    offset: int,
) -> Notification | None:
    """`dlq.event_dead_lettered` for a letter keyed `tenant_id/customer`; None when the key
    names no tenant (nobody to tell). Its id derives from the letter's source position."""
    tenant, _, customer = (key or b"").decode(errors="replace").partition("/")
    if not tenant.isdigit():
        return None
    data: dict[str, Any] = {"reason": reason, "topic": topic, "partition": partition,
                            "offset": offset, "customer": customer or None,
                            "event_id": _event_id(value)}  # fmt: skip
    return Notification(
        int(tenant), "dlq.event_dead_lettered", datetime.now(UTC), data, customer or None,
        key=f"{topic}:{incarnation}:{partition}:{offset}",
    )  # fmt: skip


def _event_id(value: bytes | None) -> str | None:
    try:
        found = orjson.loads(value or b"").get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def subscription_changed(
    before: Subscription | None, after: Subscription | None
) -> Notification | None:
    """`subscription.changed` when the plan, status, period or cancellation differ (None
    otherwise: a Stripe event replayed or reordered changes nothing and announces nothing).
    `after` None: the subscription was removed (back to the default plan)."""
    was, now = _state(before), _state(after)
    if was == now:
        return None
    sub = after or before
    assert sub is not None
    data = {"customer": sub.customer, "previous": was, "current": now}
    return Notification(
        sub.tenant_id, "subscription.changed", datetime.now(UTC), data, sub.customer
    )


def _state(sub: Subscription | None) -> dict[str, Any] | None:
    if sub is None:
        return None
    shown = sub.as_dict()
    return {k: shown[k] for k in SUBSCRIPTION_FIELDS}
