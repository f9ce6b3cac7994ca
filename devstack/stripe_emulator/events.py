"""The `/v1/events` API over the events `Emulator.emit` records.

Events recorded: `customer.created|updated|deleted`, `product.created|updated`,
`price.created|updated`, `customer.subscription.created|updated|deleted|paused|resumed`,
`subscription_schedule.created|updated|released|canceled|completed`,
`checkout.session.completed|expired`, `payment_intent.succeeded`,
`payment_method.attached|detached`, `setup_intent.created|succeeded|setup_failed|canceled`,
`billing_portal.session.created`, `invoice.created|finalized|paid|payment_failed`. Listed by
`GET /v1/events` (filters `type`, with `*` suffixes, `types[]` and `created`), read by
`GET /v1/events/{id}`.
"""

from __future__ import annotations

from typing import Any

from .core import Call, Emulator
from .listing import created_filter, newest_first, paginate

JSON = dict[str, Any]


def list_events(emu: Emulator, call: Call) -> JSON:
    """GET /v1/events: filters `type` (a `*` suffix matches a prefix), `types[]`, `created`."""
    p = call.params
    type_ = p.str("type")
    types = set(p.list("types"))
    in_range = created_filter(p)
    items = [
        event
        for event in newest_first(emu.store.table("event").values())
        if _type_matches(event["type"], type_)
        and (not types or event["type"] in types)
        and in_range(event)
    ]
    return paginate(items, p, "/v1/events")


def _type_matches(actual: str, wanted: str | None) -> bool:
    if wanted is None:
        return True
    if wanted.endswith("*"):
        return actual.startswith(wanted[:-1])
    return actual == wanted


def retrieve_event(emu: Emulator, call: Call) -> JSON:
    """GET /v1/events/{id}."""
    return emu.store.get("event", call.arg("id"))
