"""Billing Portal sessions (shared/STRIPE-BILLING.md, c): `POST /v1/billing_portal/sessions`
answers a short-lived `url` on the emulator, whose page lists the customer's subscriptions and
default card and links back to `return_url`. Sessions expire 5 minutes after creation when not
visited (Stripe says only "short-lived"; the emulator picks 5 minutes).

Create takes `customer`, `return_url`, `flow_data[type]`, `configuration` and `locale`.
"""

from __future__ import annotations

import html
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from .core import Call, Emulator, current_request
from .errors import invalid
from .state import new_id

JSON = dict[str, Any]
FLOWS = (
    "customer_update",
    "payment_method_update",
    "subscription_cancel",
    "subscription_update",
    "subscription_update_confirm",
)
TTL_S = 300


def create(emu: Emulator, call: Call) -> JSON:
    """POST /v1/billing_portal/sessions: `customer`, `return_url`, `flow_data[type]`, `locale`."""
    p = call.params
    customer = emu.store.get("customer", p.req("customer"), param="customer")
    if customer.get("deleted"):
        raise invalid(f"No such customer: '{customer['id']}'", "customer", "resource_missing")
    flow = p.sub("flow_data").str("type")
    if flow is not None and flow not in FLOWS:
        raise invalid(
            f"Invalid flow_data[type]: must be one of {', '.join(FLOWS)}", "flow_data[type]"
        )
    request = current_request.get()
    base = str(request["base"]) if request else "http://127.0.0.1"
    session_id = new_id("bps", 24)
    session: JSON = {
        "id": session_id,
        "object": "billing_portal.session",
        "configuration": p.str("configuration") or "bpc_emulator_default",
        "created": emu.now(),
        "customer": customer["id"],
        "flow": None if flow is None else {"type": flow},
        "livemode": False,
        "locale": p.str("locale"),
        "on_behalf_of": None,
        "return_url": p.str("return_url"),
        "url": f"{base}/portal/{session_id}",
    }
    emu.store.put("billing_portal.session", session)
    emu.emit("billing_portal.session.created", session)
    return session


def routes(emu: Emulator) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        session = emu.store.find("billing_portal.session", request.path_params["id"])
        if session is None or emu.now() > session["created"] + TTL_S:
            return HTMLResponse("<h1>This portal session has expired.</h1>", 404)
        return HTMLResponse(_page(emu, session))

    return [Route("/portal/{id}", page, methods=["GET"])]


def _page(emu: Emulator, session: JSON) -> str:
    subs = [
        s
        for s in emu.store.table("subscription").values()
        if s["customer"] == session["customer"] and s["status"] != "canceled"
    ]
    rows = "".join(
        f"<li>{html.escape(s['id'])}: {html.escape(s['status'])}"
        f"{' (cancels at period end)' if s['cancel_at_period_end'] else ''}</li>"
        for s in subs
    )
    back = session["return_url"]
    link = f'<a href="{html.escape(back)}">Return</a>' if back else ""
    return (
        "<!doctype html><title>Billing portal (Stripe emulator)</title>"
        f"<h1>Your subscriptions</h1><ul>{rows}</ul>{link}"
    )
