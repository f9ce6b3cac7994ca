"""Checkout Sessions (shared/STRIPE-BILLING.md, b): create, retrieve, list, line items, expire,
and completing one (through the control API: the emulator has no payment page to fill in).

A session is `open` until it is completed (`complete`, the subscription or payment made, the
customer created when none was given, `checkout.session.completed` sent) or expired (`expired`,
`url` null, `checkout.session.expired` sent), by `POST .../expire` or once the emulator's clock
passes `expires_at` (24 h by default, 30 min to 24 h when given).

Create in `payment`, `subscription` or `setup` mode (`line_items`, `customer` or
`customer_email`, `success_url`, `cancel_url`, `client_reference_id`, `metadata`,
`subscription_data`, `expires_at`); retrieve, list, `.../line_items`, `.../expire`. Recurring
prices only in subscription mode, one-time prices only in payment mode, no `quantity` on a
metered price (a 400 naming the parameter). `url` is a hosted page on the emulator
(`hosted.py`): paying there, or the control call `complete`, creates the customer if none was
given, the subscription and its first invoice (subscription mode: `subscription`, `invoice`;
`first_invoice.py`) or a succeeded PaymentIntent (payment mode); the page then redirects to
`success_url` with `{CHECKOUT_SESSION_ID}` filled in. PaymentIntents
exist only as Checkout makes them; charges and refunds are not emulated.
"""

from __future__ import annotations

from typing import Any

from . import catalog, first_invoice, payment_methods
from .core import Call, Emulator, current_request
from .errors import invalid, missing_param, not_found
from .forms import Params
from .listing import newest_first, paginate
from .state import new_id

JSON = dict[str, Any]
MODES = ("payment", "setup", "subscription")
DEFAULT_TTL_S = 24 * 3600
MIN_TTL_S = 30 * 60


def create(emu: Emulator, call: Call) -> JSON:
    """POST /v1/checkout/sessions."""
    p = call.params
    mode = p.req("mode")
    if mode not in MODES:
        raise invalid(f"Invalid mode: must be one of {', '.join(MODES)}", "mode")
    customer = _customer(emu, p)
    lines = _line_items(emu, p, mode)
    now = emu.now()
    session_id = new_id("cs_test", 58)
    session: JSON = {
        "id": session_id,
        "object": "checkout.session",
        "mode": mode,
        "status": "open",
        "payment_status": "unpaid" if mode != "setup" else "no_payment_required",
        "url": f"{_base()}/checkout/{session_id}",
        "created": now,
        "expires_at": _expires_at(p, now),
        "customer": customer,
        "customer_email": p.str("customer_email"),
        "client_reference_id": p.str("client_reference_id", max_len=200),
        "metadata": catalog.merge_metadata({}, p),
        "success_url": p.str("success_url"),
        "cancel_url": p.str("cancel_url"),
        "currency": lines[0]["price"]["currency"] if lines else None,
        "amount_subtotal": _total(lines),
        "amount_total": _total(lines),
        "subscription": None,
        "payment_intent": None,
        "setup_intent": None,
        "invoice": None,
        "livemode": False,
        "_lines": lines,
        "_subscription_data": dict(p.sub("subscription_data").data)
        if "subscription_data" in p
        else {},
    }
    emu.store.put("checkout.session", session)
    return session


def _base() -> str:
    """The emulator's own address, as the API call reached it (the hosted page's host)."""
    request = current_request.get()
    return str(request["base"]) if request else "http://127.0.0.1"


def _customer(emu: Emulator, p: Params) -> str | None:
    customer_id = p.str("customer")
    if customer_id is None:
        return None
    customer = emu.store.get("customer", customer_id, param="customer")
    if customer.get("deleted"):
        raise invalid(f"No such customer: '{customer_id}'", "customer", "resource_missing")
    return customer_id


def _line_items(emu: Emulator, p: Params, mode: str) -> list[JSON]:
    specs = p.list("line_items")
    if mode == "setup":
        return []
    if not specs:
        raise missing_param("line_items")
    lines = [_line(emu, Params(spec), i) for i, spec in enumerate(specs)]
    recurring = [line for line in lines if line["price"]["type"] == "recurring"]
    if mode == "subscription" and not recurring:
        raise invalid("You must have at least one recurring price in subscription mode.", "mode")
    if mode == "payment" and recurring:
        raise invalid("You must be in subscription mode to use recurring prices.", "mode")
    return lines


def _line(emu: Emulator, spec: Params, index: int) -> JSON:
    param = f"line_items[{index}][price]"
    price = emu.store.get("price", spec.req("price"), param=param)
    metered = price.get("recurring") and price["recurring"]["usage_type"] == "metered"
    if metered and "quantity" in spec:
        raise invalid(
            "Quantity should not be defined when `recurring.usage_type=metered`.",
            f"line_items[{index}][quantity]",
        )
    quantity = None if metered else spec.int("quantity", 1)
    if quantity is not None and quantity < 1:
        raise invalid("Quantity must be at least 1.", f"line_items[{index}][quantity]")
    return {"id": new_id("li", 24), "object": "item", "price": price, "quantity": quantity}


def _total(lines: list[JSON]) -> int:
    return sum(
        int(line["price"].get("unit_amount") or 0) * (line["quantity"] or 0) for line in lines
    )


def _expires_at(p: Params, now: int) -> int:
    given = p.int("expires_at")
    if given is None:
        return now + DEFAULT_TTL_S
    if not now + MIN_TTL_S <= given <= now + DEFAULT_TTL_S:
        raise invalid(
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from creation.",
            "expires_at",
        )
    return given


def retrieve(emu: Emulator, call: Call) -> JSON:
    """GET /v1/checkout/sessions/{id}."""
    return _current(emu, emu.store.get("checkout.session", call.arg("id")))


def list_sessions(emu: Emulator, call: Call) -> JSON:
    """GET /v1/checkout/sessions: `customer`, `subscription`, `payment_intent`, `status`."""
    p = call.params
    wanted = {n: p.str(n) for n in ("customer", "subscription", "payment_intent", "status")}
    found = [
        s
        for s in newest_first(
            _current(emu, s) for s in emu.store.table("checkout.session").values()
        )
        if all(v is None or s.get(n) == v for n, v in wanted.items())
    ]
    return paginate(found, p, "/v1/checkout/sessions")


def line_items(emu: Emulator, call: Call) -> JSON:
    """GET /v1/checkout/sessions/{id}/line_items."""
    session = emu.store.get("checkout.session", call.arg("id"))
    lines = [
        {
            "id": line["id"],
            "object": "item",
            "price": line["price"],
            "quantity": line["quantity"],
            "currency": line["price"]["currency"],
            "amount_subtotal": _total([line]),
            "amount_total": _total([line]),
            "description": line["price"].get("nickname") or line["price"]["product"],
        }
        for line in session["_lines"]
    ]
    return paginate(lines, call.params, f"/v1/checkout/sessions/{session['id']}/line_items")


def retrieve_open(emu: Emulator, session_id: str) -> JSON:
    """The session if it is open; StripeError 404 otherwise (the hosted page's view)."""
    session = _current(emu, emu.store.get("checkout.session", session_id))
    if session["status"] != "open":
        raise not_found("checkout.session", session_id)
    return session


def expire(emu: Emulator, call: Call) -> JSON:
    """POST /v1/checkout/sessions/{id}/expire: only an open session."""
    session = _current(emu, emu.store.get("checkout.session", call.arg("id")))
    if session["status"] != "open":
        raise invalid(
            f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
            f'Session has a status of "{session["status"]}".',
        )
    return _expired(emu, session)


def _current(emu: Emulator, session: JSON) -> JSON:
    """The session, expired first when the clock passed `expires_at` while it was open."""
    if session["status"] == "open" and emu.now() >= session["expires_at"]:
        _expired(emu, session)
    return session


def _expired(emu: Emulator, session: JSON) -> JSON:
    session["status"], session["url"] = "expired", None
    emu.emit("checkout.session.expired", session)
    return session


def complete(
    emu: Emulator, session_id: str, email: str | None = None, card: str = "pm_card_visa"
) -> JSON:
    """The customer paid (or set up a card) with the test card `card`: make what the session
    sells, save the card (the customer's default when it had none), then send
    `checkout.session.completed`. Raises ValueError for a session that is not open and
    StripeError 402 for a card that is declined."""
    session = _current(emu, emu.store.get("checkout.session", session_id))
    if session["status"] != "open":
        raise ValueError(f"the session is {session['status']}, not open")
    method = payment_methods.resolve(emu, card)
    if session["customer"] is None:
        made = catalog.create_customer(
            emu,
            Call("POST", "/v1/customers", Params({"email": email or session["customer_email"]})),
        )
        session["customer"] = made["id"]
    _save_card(emu, session["customer"], method)
    _fulfil(emu, session, method)
    session["status"], session["url"] = "complete", None
    if session["mode"] != "setup":
        session["payment_status"] = "paid" if session["amount_total"] else "no_payment_required"
    emu.emit("checkout.session.completed", session)
    return session


def _save_card(emu: Emulator, customer_id: str, method: JSON) -> None:
    payment_methods.attach_to(emu, method, customer_id)
    customer = emu.store.get("customer", customer_id)
    if not (customer.get("invoice_settings") or {}).get("default_payment_method"):
        payment_methods.set_default(emu, customer, method["id"])


def _fulfil(emu: Emulator, session: JSON, method: JSON) -> None:
    if session["mode"] == "subscription":
        items = [
            {
                "price": line["price"]["id"],
                **({"quantity": line["quantity"]} if line["quantity"] else {}),
            }
            for line in session["_lines"]
        ]
        extra = session["_subscription_data"]
        params = {"customer": session["customer"], "items": items, **extra}
        sub = first_invoice.create(emu, Call("POST", "/v1/subscriptions", Params(params)))
        session["subscription"], session["invoice"] = sub["id"], sub["latest_invoice"]
    elif session["mode"] == "payment":
        session["payment_intent"] = _payment_intent(emu, session)["id"]
    else:
        params = {"customer": session["customer"], "payment_method": method["id"], "confirm": True}
        intent = payment_methods.create_setup_intent(
            emu, Call("POST", "/v1/setup_intents", Params(params))
        )
        session["setup_intent"] = intent["id"]


def _payment_intent(emu: Emulator, session: JSON) -> JSON:
    intent: JSON = {
        "id": new_id("pi", 24),
        "object": "payment_intent",
        "amount": session["amount_total"],
        "amount_received": session["amount_total"],
        "currency": session["currency"],
        "customer": session["customer"],
        "status": "succeeded",
        "created": emu.now(),
        "metadata": dict(session["metadata"]),
        "livemode": False,
    }
    emu.store.put("payment_intent", intent)
    emu.emit("payment_intent.succeeded", intent)
    return intent
