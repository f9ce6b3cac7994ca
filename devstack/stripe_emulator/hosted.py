"""The hosted Checkout page a session's `url` points at: what the customer sees, stripped to a
summary and one button, so browser tests and demos can walk through Checkout. Paying completes
the session (`checkout.complete`) and redirects to `success_url`, with `{CHECKOUT_SESSION_ID}`
filled in as Stripe does; the cancel link goes to `cancel_url`."""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from . import checkout
from .core import Emulator
from .errors import StripeError

PLACEHOLDER = "{CHECKOUT_SESSION_ID}"


def routes(emu: Emulator) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        session = _session(emu, request)
        if session is None:
            return HTMLResponse("<h1>This Checkout Session is no longer available.</h1>", 404)
        if request.method == "GET":
            return HTMLResponse(_form(session))
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        email = form.get("email", [""])[0]
        session_id = str(session["id"])
        checkout.complete(emu, session_id, email or None)
        emu.persist()
        target = str(session["success_url"] or "/").replace(PLACEHOLDER, session_id)
        return RedirectResponse(target, status_code=303)

    return [Route("/checkout/{id}", page, methods=["GET", "POST"])]


def _session(emu: Emulator, request: Request) -> dict[str, object] | None:
    try:
        session = checkout.retrieve_open(emu, request.path_params["id"])
    except StripeError:
        return None
    return session


def _form(session: dict[str, object]) -> str:
    total = int(str(session["amount_total"] or 0))
    currency = str(session["currency"] or "").upper()
    email = (
        ""
        if session["customer"]
        else ('<label>Email <input name="email" type="email" required></label>')
    )
    cancel = session["cancel_url"]
    back = f'<a href="{html.escape(str(cancel))}">Cancel</a>' if cancel else ""
    return (
        "<!doctype html><title>Checkout (Stripe emulator)</title>"
        f"<h1>Pay {total / 100:.2f} {html.escape(currency)}</h1>"
        f'<form method="post">{email}<button type="submit">Pay</button></form>{back}'
    )
