"""What the /finance pages check before they trust a request, and what they add to answers.

- `FinanceHeaders`: an ASGI middleware that adds a strict Content-Security-Policy (no
  scripts, no framing: `frame-ancestors 'none'`), `nosniff`, `Referrer-Policy` and, on every
  page but the static files, `Cache-Control: no-store` (pages carry billing data).
- `check_origin`: a post whose `Origin` (or, without one, `Referer`) names another site is
  refused. Browsers send `Origin` on posts, and other sites on the same registrable domain
  are the case SameSite cookies do not cover. A request with neither header passes here and
  still needs the session's CSRF token.
- `read_form`: a urlencoded form read with a byte limit, refused with 413 from its declared
  length before anything is read, or as soon as the bytes received pass the limit.

Why and in detail: SameSite=Strict does not stop other origins of the same site (another port
or subdomain), so every post (sign-in and sign-out included) is checked twice: an `Origin`
(or `Referer`) that is not our host or `public_url`'s host, or is `null`, is a 403, and the
form must carry its token (reporter/web.py). A refused post changes nothing. Forms are limited
to 4 KiB at sign-in and 32 KiB elsewhere (`web.py`); a 413 closes the connection, so the rest
of a body is never received (a 400 MiB chunked sign-in is cut after the few MiB in flight, and
the reporter's RSS stays flat). The headers on every /finance answer: `Content-Security-Policy:
default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors
'none'; base-uri 'none'`, `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`,
`Referrer-Policy: same-origin`, `Cross-Origin-Opener-Policy: same-origin`, and
`Cache-Control: no-store` on everything but the static files.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterline.errors import (
    FieldError,
    Forbidden,
    PayloadTooLarge,
    ValidationFailed,
)

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_ALWAYS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_PAGES = {**_ALWAYS, "Cache-Control": "no-store"}
MAX_FIELDS = 16


class FinanceHeaders:
    """Adds the security headers to every answer under /finance (pages, errors, redirects)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/finance"):
            await self.app(scope, receive, send)
            return
        extra = _ALWAYS if path.startswith("/finance/static/") else _PAGES

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def check_origin(request: Request, public_url: str) -> None:
    """Raise Forbidden when the post names a foreign origin (`null` included).

    Our origin is the request's own host (the browser sets `Host` for the site it talks to)
    or the host of `public_url`; the scheme is not compared, so a proxy that terminates TLS
    without telling us does not lock users out.
    """
    source = request.headers.get("origin") or _referer_origin(request.headers.get("referer"))
    if source is None:
        return
    ours = {request.headers.get("host", "").lower(), urlsplit(public_url).netloc.lower()} - {""}
    if source == "null" or urlsplit(source).netloc.lower() not in ours:
        raise Forbidden("this form was sent from another site; open the page again and retry")


def is_tls(request: Request) -> bool:
    """Whether the browser reached us over HTTPS (directly or through a proxy that says so)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """The form's fields (first value of each), reading at most `limit` bytes of body.

    The body is read as a urlencoded form whatever its declared type: anything else yields
    no usable field (and so no CSRF token). Raises PayloadTooLarge (413) past the limit,
    ValidationFailed (422) for more than MAX_FIELDS fields.
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PayloadTooLarge(f"a form may hold at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"a form may hold at most {limit} bytes")
    return _fields(body.decode("utf-8", errors="replace"))


def _fields(text: str) -> dict[str, str]:
    try:
        parsed: dict[str, Any] = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise ValidationFailed([FieldError("form", f"at most {MAX_FIELDS} fields")]) from None
    return {name: values[0] for name, values in parsed.items()}


def _referer_origin(referer: str | None) -> str | None:
    if not referer:
        return None
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "null"
