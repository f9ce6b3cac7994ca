"""Subscription Schedules (shared/STRIPE-BILLING.md, e, "Downgrade at period end").

The documented downgrade pattern: `POST /v1/subscription_schedules` with `from_subscription`
(no other parameter allowed with it) makes one phase from the subscription's current period;
`POST /v1/subscription_schedules/{id}` replaces `phases` (each `items[{price, quantity}]`,
`start_date`, `end_date`; the current phase's start cannot move) and `end_behavior`
(`release` default, or `cancel`). A phase without `end_date` lasts one interval of its first
price. When a subscription's period closes at a phase's end, the next phase's items take over
(before the period's invoice, so the next period is billed at the new prices and the closing
period's metered usage at the old ones); after the last phase the schedule is `released` (the
subscription goes on) or `canceled` with its subscription (`end_behavior=cancel`).
Also retrieve, list (`customer`), `/release` (the subscription keeps its current items) and
`/cancel` (the subscription is canceled now). Creating from `customer` + `phases` is not
emulated (400). Events: `subscription_schedule.created|updated|released|canceled|completed`.
"""

from __future__ import annotations

import copy
from typing import Any

from . import periods, subscriptions
from .core import Call, Emulator
from .errors import invalid
from .forms import Params
from .listing import newest_first, paginate
from .state import new_id

JSON = dict[str, Any]
END_BEHAVIORS = ("release", "cancel")


def create(emu: Emulator, call: Call) -> JSON:
    """POST /v1/subscription_schedules (`from_subscription` only)."""
    p = call.params
    sub_id = p.str("from_subscription")
    if sub_id is None:
        raise invalid("The emulator creates schedules only from_subscription.", "from_subscription")
    if len([k for k in p.data if k not in ("from_subscription", "expand")]) > 0:
        raise invalid(
            "You cannot set other parameters when using from_subscription.", "from_subscription"
        )
    sub = subscriptions.live(emu, sub_id)
    if sub.get("schedule"):
        raise invalid(
            f"The subscription {sub_id} is already attached to a schedule.", "from_subscription"
        )
    start, end = _period(sub)
    schedule: JSON = {
        "id": new_id("sub_sched", 24),
        "object": "subscription_schedule",
        "created": emu.now(),
        "customer": sub["customer"],
        "subscription": sub["id"],
        "status": "active",
        "end_behavior": "release",
        "released_at": None,
        "released_subscription": None,
        "canceled_at": None,
        "completed_at": None,
        "metadata": {},
        "livemode": False,
        "phases": [_phase(_current_items(sub), start, end)],
        "current_phase": {"start_date": start, "end_date": end},
    }
    emu.store.put("subscription_schedule", schedule)
    sub["schedule"] = schedule["id"]
    emu.emit("subscription_schedule.created", schedule)
    return schedule


def update(emu: Emulator, call: Call) -> JSON:
    """POST /v1/subscription_schedules/{id}: `phases`, `end_behavior`, `metadata`."""
    schedule = _open(emu, call.arg("id"))
    p = call.params
    behavior = p.str("end_behavior") or schedule["end_behavior"]
    if behavior not in END_BEHAVIORS:
        raise invalid(
            f"Invalid end_behavior: must be one of {', '.join(END_BEHAVIORS)}", "end_behavior"
        )
    if "phases" in p:
        schedule["phases"] = _phases(emu, schedule, p.list("phases"))
        first = schedule["phases"][0]
        schedule["current_phase"] = {
            "start_date": first["start_date"],
            "end_date": first["end_date"],
        }
    schedule["end_behavior"] = behavior
    if "metadata" in p:
        schedule["metadata"] = {**schedule["metadata"], **p.dict("metadata")}
    emu.emit("subscription_schedule.updated", schedule)
    return schedule


def _phases(emu: Emulator, schedule: JSON, raw: list[Any]) -> list[JSON]:
    if not raw:
        raise invalid("A schedule needs at least one phase.", "phases")
    current = schedule["current_phase"]["start_date"]
    phases: list[JSON] = []
    start = current
    for index, spec in enumerate(raw):
        phase = Params(spec)
        given = _date(phase.data.get("start_date"), start)
        if index == 0 and given != current:
            raise invalid(
                "You can not modify the start date of the current phase.", "phases[0][start_date]"
            )
        if index > 0 and given != start:
            raise invalid(
                "A phase must start when the previous one ends.", f"phases[{index}][start_date]"
            )
        items = [_item(emu, Params(i), index, n) for n, i in enumerate(phase.list("items"))]
        if not items:
            raise invalid("Each phase needs items.", f"phases[{index}][items]")
        end = phase.int("end_date") or _one_interval(emu, items[0], given)
        if end <= given:
            raise invalid("end_date must be after start_date.", f"phases[{index}][end_date]")
        phases.append(_phase(items, given, end))
        start = end
    return phases


def _date(value: Any, default: int) -> int:
    if value is None or value == "now":
        return default
    return int(value)


def _item(emu: Emulator, spec: Params, phase: int, n: int) -> JSON:
    param = f"phases[{phase}][items][{n}][price]"
    price_id = spec.str("price")
    if price_id is None:
        raise invalid("Missing required param: price.", param)
    price = emu.store.get("price", price_id, param=param)
    metered = (price.get("recurring") or {}).get("usage_type") == "metered"
    return {"price": price_id, "quantity": None if metered else spec.int("quantity", 1)}


def _one_interval(emu: Emulator, item: JSON, start: int) -> int:
    recurring = emu.store.get("price", item["price"])["recurring"]
    return periods.boundary(start, recurring["interval"], recurring["interval_count"], 1)


def _phase(items: list[JSON], start: int, end: int) -> JSON:
    return {"items": items, "start_date": start, "end_date": end, "proration_behavior": "none"}


def _current_items(sub: JSON) -> list[JSON]:
    return [
        {"price": i["price"]["id"], "quantity": i["quantity"]}
        for i in subscriptions.items_list(sub)
    ]


def _period(sub: JSON) -> tuple[int, int]:
    items = subscriptions.items_list(sub)
    return (
        min(i["current_period_start"] for i in items),
        max(i["current_period_end"] for i in items),
    )


def _open(emu: Emulator, schedule_id: str) -> JSON:
    schedule = emu.store.get("subscription_schedule", schedule_id)
    if schedule["status"] not in ("not_started", "active"):
        raise invalid(
            f"You cannot update a subscription schedule that is {schedule['status']}.", "id"
        )
    return schedule


def retrieve(emu: Emulator, call: Call) -> JSON:
    """GET /v1/subscription_schedules/{id}."""
    return emu.store.get("subscription_schedule", call.arg("id"))


def list_schedules(emu: Emulator, call: Call) -> JSON:
    """GET /v1/subscription_schedules (`customer`)."""
    customer = call.params.str("customer")
    rows = [
        s
        for s in emu.store.table("subscription_schedule").values()
        if customer is None or s["customer"] == customer
    ]
    return paginate(newest_first(rows), call.params, "/v1/subscription_schedules")


def release(emu: Emulator, call: Call) -> JSON:
    """POST /v1/subscription_schedules/{id}/release: the subscription goes on as it is."""
    schedule = _open(emu, call.arg("id"))
    return _released(emu, schedule)


def cancel(emu: Emulator, call: Call) -> JSON:
    """POST /v1/subscription_schedules/{id}/cancel: the subscription is canceled now too."""
    schedule = _open(emu, call.arg("id"))
    schedule["status"], schedule["canceled_at"] = "canceled", emu.now()
    sub = emu.store.get("subscription", schedule["subscription"])
    sub["schedule"] = None
    if sub["status"] not in ("canceled", "incomplete_expired"):
        subscriptions.cancel_now(emu, sub)
    emu.emit("subscription_schedule.canceled", schedule)
    return schedule


def _released(emu: Emulator, schedule: JSON) -> JSON:
    schedule["status"], schedule["released_at"] = "released", emu.now()
    schedule["released_subscription"] = schedule["subscription"]
    schedule["current_phase"] = None
    emu.store.get("subscription", schedule["subscription"])["schedule"] = None
    emu.emit("subscription_schedule.released", schedule)
    return schedule


def enter_next_phase(emu: Emulator, sub: JSON, period_end: int) -> None:
    """Called as `sub`'s period ending at `period_end` closes: when its schedule's current
    phase ends there, the next phase's items replace the subscription's (no prorations), or,
    after the last phase, the schedule ends as its `end_behavior` says."""
    schedule = emu.store.find("subscription_schedule", sub.get("schedule") or "")
    if schedule is None or schedule["status"] != "active":
        return
    phases = schedule["phases"]
    index = next((i for i, ph in enumerate(phases) if ph["end_date"] == period_end), None)
    if index is None:
        return
    if index + 1 < len(phases):
        _apply_items(emu, sub, phases[index + 1]["items"])
        nxt = phases[index + 1]
        schedule["current_phase"] = {"start_date": nxt["start_date"], "end_date": nxt["end_date"]}
        emu.emit("subscription_schedule.updated", schedule)
    elif schedule["end_behavior"] == "cancel":
        sub["cancel_at_period_end"] = True
        schedule["status"], schedule["completed_at"] = "completed", emu.now()
        sub["schedule"] = None
        emu.emit("subscription_schedule.completed", schedule)
    else:
        _released(emu, schedule)


def _apply_items(emu: Emulator, sub: JSON, wanted: list[JSON]) -> None:
    """Swap the subscription's items for `wanted`: item n takes wanted n's price and quantity;
    extra items are removed, missing ones added."""
    current = subscriptions.items_list(sub)
    specs: list[JSON] = []
    for n, want in enumerate(wanted):
        spec: JSON = {"price": want["price"]}
        if want["quantity"] is not None:
            spec["quantity"] = want["quantity"]
        if n < len(current):
            spec["id"] = current[n]["id"]
        specs.append(spec)
    specs += [{"id": item["id"], "deleted": True} for item in current[len(wanted) :]]
    subscriptions.apply_update(emu, sub, Params({"items": copy.deepcopy(specs)}))
