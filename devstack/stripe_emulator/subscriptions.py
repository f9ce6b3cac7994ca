"""Subscriptions and their items: create, retrieve, list, update, cancel, pause, resume.

Each item carries its own `current_period_start/end`, computed from the item's
billing-cycle anchor (`_anchor`) and period index (`_index`); underscore fields are internal
and never leave the emulator. Periods move only when a period is closed (control API) or on
resume, so the clock can be advanced freely without surprises.

Create with `customer`, `items[n][price|quantity|metadata]`, `trial_period_days` or
`trial_end`, and `metadata`. Month and year periods keep the anchor day, clamped to the end of
short months. A trial is the current period (creation to `trial_end`; items added during it
end with it), its usage is not charged, and the first paid period starts at `trial_end`
(status `trialing` -> `active`). List by `customer`, `price` or `status`: canceled
subscriptions are left out unless `status=all`. Updates are `changes.py`: an item's price or
quantity, items added or deleted, `cancel_at_period_end`, `cancel_at`, `pause_collection`,
`metadata`. Cancel (`DELETE`), `.../pause` and `.../resume` (new periods from now, unless
`billing_cycle_anchor=unchanged`). `GET /v1/subscription_items` (`?subscription=`) and
`GET /v1/subscription_items/{id}`. No automatic renewal when time passes: use the control
API's `close_period`, or `clock/advance` with `close_due_periods`.
"""

from __future__ import annotations

import copy
from typing import Any

from . import periods
from .catalog import merge_metadata
from .core import Call, Emulator
from .errors import invalid, missing_param, not_found
from .forms import Params
from .listing import newest_first, paginate
from .state import new_id

JSON = dict[str, Any]
LIVE = ("active", "trialing", "past_due", "unpaid", "incomplete", "paused")


def make_item(
    emu: Emulator, sub_id: str, spec: Params, anchor: int, trial_start: int | None = None
) -> JSON:
    """A subscription item for `spec` (`price`, `quantity`, `metadata`) anchored at `anchor`.
    With `trial_start`, its current period is the trial, `trial_start` to `anchor` (index -1),
    as Stripe runs trials; the first paid period starts at the anchor."""
    price_id = spec.str("price")
    if price_id is None:
        raise missing_param("items[0][price]")
    price = emu.store.get("price", price_id, param="items[0][price]")
    if price["type"] != "recurring":
        raise invalid(f"The price {price_id} is not recurring.", "items[0][price]")
    metered = price["recurring"]["usage_type"] == "metered"
    item = {
        "id": new_id("si", 14),
        "object": "subscription_item",
        "created": emu.now(),
        "metadata": spec.dict("metadata"),
        "price": copy.deepcopy(price),
        "quantity": None if metered else spec.int("quantity", 1),
        "subscription": sub_id,
        "_anchor": anchor,
        "_index": 0 if trial_start is None else -1,
        "_trial_start": trial_start,
    }
    set_period(item)
    return item


def set_period(item: JSON) -> None:
    """Refresh `current_period_start/end` from the item's anchor and index."""
    recurring = item["price"]["recurring"]
    if item["_index"] < 0:
        start, end = item["_trial_start"], item["_anchor"]
    else:
        start, end = periods.period(
            item["_anchor"], recurring["interval"], recurring["interval_count"], item["_index"]
        )
    item["current_period_start"], item["current_period_end"] = start, end


def items_list(sub: JSON) -> list[JSON]:
    """The subscription's items."""
    return list(sub["items"]["data"])


def create(emu: Emulator, call: Call) -> JSON:
    """POST /v1/subscriptions: `customer`, `items[n][price|quantity]`, optional trial."""
    p = call.params
    customer = emu.store.get("customer", p.req("customer"), param="customer")
    if customer.get("deleted"):
        raise invalid(f"No such customer: '{customer['id']}'", "customer", "resource_missing")
    specs = p.list("items")
    if not specs:
        raise missing_param("items")
    now = emu.now()
    trial_end = _trial_end(p, now)
    sub_id = new_id("sub", 24)
    anchor = trial_end or now
    trial_start = now if trial_end else None
    items = [make_item(emu, sub_id, Params(spec), anchor, trial_start) for spec in specs]
    sub = _subscription(emu, sub_id, customer["id"], items, p, trial_end)
    emu.store.put("subscription", sub)
    emu.emit("customer.subscription.created", sub)
    return sub


def _trial_end(p: Params, now: int) -> int | None:
    days = p.int("trial_period_days")
    if days is not None:
        return now + days * 86_400
    return p.int("trial_end")


def _subscription(
    emu: Emulator, sub_id: str, customer: str, items: list[JSON], p: Params, trial_end: int | None
) -> JSON:
    now = emu.now()
    return {
        "id": sub_id,
        "object": "subscription",
        "billing_cycle_anchor": trial_end or now,
        "cancel_at": None,
        "cancel_at_period_end": bool(p.bool("cancel_at_period_end", False)),
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "created": now,
        "currency": items[0]["price"]["currency"],
        "customer": customer,
        "ended_at": None,
        "items": _items_envelope(sub_id, items),
        "latest_invoice": None,
        "livemode": False,
        "metadata": p.dict("metadata"),
        "pause_collection": None,
        "schedule": None,
        "start_date": now,
        "status": "trialing" if trial_end else "active",
        "trial_end": trial_end,
        "trial_start": now if trial_end else None,
    }


def _items_envelope(sub_id: str, items: list[JSON]) -> JSON:
    return {
        "object": "list",
        "data": items,
        "has_more": False,
        "total_count": len(items),
        "url": f"/v1/subscription_items?subscription={sub_id}",
    }


def retrieve(emu: Emulator, call: Call) -> JSON:
    """GET /v1/subscriptions/{id}."""
    return emu.store.get("subscription", call.arg("id"))


def list_subscriptions(emu: Emulator, call: Call) -> JSON:
    """GET /v1/subscriptions: `customer`, `price`, `status` (default: all but canceled)."""
    p = call.params
    customer, price, status = p.str("customer"), p.str("price"), p.str("status")
    items = [
        s
        for s in newest_first(emu.store.table("subscription").values())
        if (customer is None or s["customer"] == customer)
        and _status_matches(s["status"], status)
        and (price is None or any(i["price"]["id"] == price for i in items_list(s)))
    ]
    return paginate(items, p, "/v1/subscriptions")


def _status_matches(actual: str, wanted: str | None) -> bool:
    if wanted is None:
        return actual != "canceled" and actual != "incomplete_expired"
    return wanted == "all" or actual == wanted


def apply_update(emu: Emulator, sub: JSON, p: Params) -> list[tuple[JSON | None, JSON | None]]:
    """Apply items (change price, quantity, add, delete), metadata, `cancel_at_period_end`,
    `cancel_at`, `pause_collection` to `sub`; fires nothing. Answers each item changed as
    (before, after), `None` for an item added or deleted."""
    changed = []
    for spec in p.list("items"):
        changed.append(_update_item(emu, sub, Params(spec)))
    sub["cancel_at_period_end"] = p.bool("cancel_at_period_end", sub["cancel_at_period_end"])
    if "cancel_at" in p:
        sub["cancel_at"] = p.int("cancel_at")
    if "pause_collection" in p:
        pause = p.data["pause_collection"]
        behavior = None if pause == "" else p.sub("pause_collection").str("behavior")
        sub["pause_collection"] = behavior and {"behavior": behavior, "resumes_at": None}
    if "metadata" in p:
        sub["metadata"] = merge_metadata(sub["metadata"], p)
    return changed


def _update_item(emu: Emulator, sub: JSON, spec: Params) -> tuple[JSON | None, JSON | None]:
    items = items_list(sub)
    item_id = spec.str("id")
    before: JSON | None = None
    after: JSON | None = None
    if item_id is None:
        trialing = sub["status"] == "trialing"
        anchor, trial_start = (sub["trial_end"], emu.now()) if trialing else (emu.now(), None)
        after = make_item(emu, sub["id"], spec, anchor, trial_start)
        items.append(after)
    else:
        item = next((i for i in items if i["id"] == item_id), None)
        if item is None:
            raise invalid(f"No such subscription item: '{item_id}'", "items", "resource_missing")
        before = copy.deepcopy(item)
        if spec.bool("deleted", False):
            retire(emu, sub, item)
            items.remove(item)
        else:
            _change_item(emu, sub, item, spec)
            after = item
    if not items:
        raise invalid("A subscription must keep at least one item.", "items")
    sub["items"] = _items_envelope(sub["id"], items)
    return before, after


def retire(emu: Emulator, sub: JSON, item: JSON) -> None:
    """Keep a metered item's usage so far for the period's invoice (billing_mode=flexible:
    removing a metered price bills the usage reported until then); the item, or the price
    that replaces it, bills only usage from now on (`_billed_from`)."""
    if item["price"]["recurring"]["usage_type"] != "metered":
        return
    sub.setdefault("_retired", []).append({**copy.deepcopy(item), "_billed_until": emu.now()})
    item["_billed_from"] = emu.now()


def _change_item(emu: Emulator, sub: JSON, item: JSON, spec: Params) -> None:
    price_id = spec.str("price")
    if price_id is not None and price_id != item["price"]["id"]:
        price = emu.store.get("price", price_id, param="items[0][price]")
        retire(emu, sub, item)
        old, new = item["price"]["recurring"], price.get("recurring") or {}
        if (old["interval"], old["interval_count"]) != (
            new.get("interval"),
            new.get("interval_count"),
        ):
            item["_anchor"], item["_index"] = emu.now(), 0
        item["price"] = copy.deepcopy(price)
        set_period(item)
    if item["price"]["recurring"]["usage_type"] == "metered":
        item["quantity"] = None
    elif "quantity" in spec or item["quantity"] is None:
        item["quantity"] = spec.int("quantity", 1)
    if "metadata" in spec:
        item["metadata"] = spec.dict("metadata")


def emit_updated(emu: Emulator, before: JSON, after: JSON, kind: str = "updated") -> None:
    """Fire `customer.subscription.<kind>` with the changed top-level fields."""
    previous = {k: v for k, v in before.items() if after.get(k) != v}
    emu.emit(f"customer.subscription.{kind}", after, previous)


def live(emu: Emulator, sub_id: str) -> JSON:
    sub = emu.store.get("subscription", sub_id)
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid(
            f"The subscription {sub_id} is canceled and can no longer change.",
            "id",
        )
    return sub


def cancel(emu: Emulator, call: Call) -> JSON:
    """DELETE /v1/subscriptions/{id}: canceled now; fires customer.subscription.deleted."""
    sub = live(emu, call.arg("id"))
    return cancel_now(emu, sub)


def cancel_now(emu: Emulator, sub: JSON) -> JSON:
    """Move `sub` to canceled and fire customer.subscription.deleted."""
    before = copy.deepcopy(sub)
    now = emu.now()
    for item in items_list(sub):
        retire(emu, sub, item)
    sub.update(status="canceled", canceled_at=now, ended_at=now)
    emit_updated(emu, before, sub, "deleted")
    return sub


def pause(emu: Emulator, call: Call) -> JSON:
    """POST /v1/subscriptions/{id}/pause: status `paused`; fires .paused and .updated."""
    sub = live(emu, call.arg("id"))
    if sub["status"] == "paused":
        raise invalid(f"Subscription {sub['id']} is already paused.", "id")
    before = copy.deepcopy(sub)
    sub["status"] = "paused"
    emit_updated(emu, before, sub, "paused")
    emit_updated(emu, before, sub)
    return sub


def resume(emu: Emulator, call: Call) -> JSON:
    """POST /v1/subscriptions/{id}/resume: active again with new periods from now
    (`billing_cycle_anchor=unchanged` keeps them); fires .resumed and .updated."""
    sub = live(emu, call.arg("id"))
    if sub["status"] != "paused":
        raise invalid(f"Subscription {sub['id']} is not paused.", "id")
    before = copy.deepcopy(sub)
    sub["status"] = "active"
    if call.params.str("billing_cycle_anchor") != "unchanged":
        sub["billing_cycle_anchor"] = emu.now()
        for item in items_list(sub):
            item["_anchor"], item["_index"] = emu.now(), 0
            set_period(item)
    emit_updated(emu, before, sub, "resumed")
    emit_updated(emu, before, sub)
    return sub


def list_items(emu: Emulator, call: Call) -> JSON:
    """GET /v1/subscription_items?subscription=..."""
    sub = emu.store.get("subscription", call.params.req("subscription"), param="subscription")
    url = f"/v1/subscription_items?subscription={sub['id']}"
    return paginate(items_list(sub), call.params, url)


def retrieve_item(emu: Emulator, call: Call) -> JSON:
    """GET /v1/subscription_items/{id}."""
    for sub in emu.store.table("subscription").values():
        for item in items_list(sub):
            if item["id"] == call.arg("id"):
                return item
    raise not_found("subscription item", call.arg("id"))
