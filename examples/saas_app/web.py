"""What every page uses: the signed-in account, Meterline, form fields, rendering and
redirects with a notice."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from .accounts import COOKIE, Account
from .meterline_api import Meterline

LIVE = ("active", "trialing", "past_due", "unpaid", "incomplete", "paused")


class SignedOut(Exception):
    """The page needs an account: go to sign-up."""


def account(request: Request) -> Account:
    found: Account | None = request.app.state.cookies.load(request.cookies.get(COOKIE))
    if found is None:
        raise SignedOut
    return found


def meterline_of(request: Request) -> Meterline:
    found: Meterline = request.app.state.meterline
    return found


async def form_fields(request: Request) -> dict[str, str]:
    """An url-encoded form's fields (the first value of each; no multipart needed)."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body).items()}


Signed = Annotated[Account, Depends(account)]
Api = Annotated[Meterline, Depends(meterline_of)]
Fields = Annotated[dict[str, str], Depends(form_fields)]


def field(fields: dict[str, str], name: str, max_length: int = 64) -> str:
    """A required form field; 422 naming it when missing, empty or too long."""
    value = fields.get(name, "").strip()
    if not value or len(value) > max_length:
        raise HTTPException(422, f"{name}: required, at most {max_length} characters")
    return value


def number(fields: dict[str, str], name: str, low: int, high: int) -> int:
    """A required whole number in [low, high]; 422 naming the field otherwise."""
    text = field(fields, name, 20)
    if not text.isdigit() or not low <= int(text) <= high:
        raise HTTPException(422, f"{name}: a whole number from {low} to {high}")
    return int(text)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    page = request.app.state.templates.get_template(template)
    notice = request.query_params.get("notice")
    return HTMLResponse(page.render(request=request, notice=notice, **context), status)


def go(path: str, notice: str | None = None) -> RedirectResponse:
    target = path if notice is None else f"{path}?notice={quote(notice)}"
    return RedirectResponse(target, status_code=303)


def subscribed(overview: dict[str, Any] | None) -> bool:
    """Whether the billing overview shows a live Stripe subscription."""
    sub = (overview or {}).get("subscription")
    return bool(sub and sub["status"] in LIVE)
