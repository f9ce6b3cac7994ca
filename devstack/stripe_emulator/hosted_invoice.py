"""The hosted invoice page an invoice's `hosted_invoice_url` points at (`/invoice/{id}`): what
the customer sees, stripped to the number, status, lines and amount due. An open invoice shows
a Pay button that charges the customer's default card as `POST /v1/invoices/{id}/pay` does
(a card that fails charges is declined and the invoice stays open). A draft or unknown invoice
is a 404, as Stripe links only finalized invoices."""

from __future__ import annotations

import html
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from . import invoices, payment_methods
from .core import Emulator

JSON = dict[str, Any]
GONE = "<h1>This invoice is not available.</h1>"


def routes(emu: Emulator) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        invoice = emu.store.find("invoice", request.path_params["id"])
        if invoice is None or invoice["status"] == "draft":
            return HTMLResponse(GONE, 404)
        if request.method == "GET":
            return HTMLResponse(render(invoice))
        if invoice["status"] != "open":
            return RedirectResponse(request.url.path, status_code=303)
        if payment_methods.charge_fails(emu, invoice["customer"]):
            return HTMLResponse(render(invoice, "Your card was declined."), 402)
        invoices.pay(emu, invoice)
        emu.persist()
        return RedirectResponse(request.url.path, status_code=303)

    return [Route("/invoice/{id}", page, methods=["GET", "POST"])]


def render(invoice: JSON, error: str = "") -> str:
    """The page: a table of lines, the total and the status (a Pay form when open)."""
    currency = html.escape(str(invoice["currency"]).upper())
    rows = "".join(
        f"<tr><td>{html.escape(str(line['description']))}</td>"
        f"<td>{_money(line['amount'])} {currency}</td></tr>"
        for line in invoice["lines"]["data"]
    )
    status = html.escape(str(invoice["status"]))
    pay = '<form method="post"><button type="submit">Pay</button></form>'
    return (
        f"<!doctype html><title>Invoice {html.escape(str(invoice['number']))} (Stripe emulator)"
        f"</title><h1>Invoice {html.escape(str(invoice['number']))}</h1>"
        f'<p>Status: <b id="status">{status}</b></p>'
        f"<table>{rows}</table>"
        f'<p>Amount due: <b id="amount-due">{_money(invoice["amount_due"])} {currency}</b></p>'
        + (f'<p role="alert">{html.escape(error)}</p>' if error else "")
        + (pay if invoice["status"] == "open" else "")
    )


def _money(minor: int) -> str:
    return f"{minor / 100:.2f}"
