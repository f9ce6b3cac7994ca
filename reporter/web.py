"""The /finance pages: server-rendered HTML (Jinja2), no JavaScript, no client state.

Sign-in: the person pastes an API key of their tenant once on /finance/login. The server checks
it (scope `read` at least) and opens a server-side session (reporter/sessions.py); the cookie
holds only the random session id: HttpOnly, SameSite=Strict, Path=/finance, `Secure` over
HTTPS (`METERLINE_REPORTER_COOKIE_SECURE`, `auto` by default). Logout, idle and absolute
expiry, and revoking the key end the session. Viewing needs `read`; acknowledging, resolving
and repairs need `admin`.

Every post (sign-in and sign-out included) must come from our own origin when the browser
says where it comes from (reporter/webguard.py) and carry the form token: the session's CSRF
token, or before sign-in a token the login page set in a cookie of its own (double submit).
Forms are read with a byte limit before anything else. The boxes on a page show only fixed
texts chosen by a code in the address (`?error=bad_key`, `?message=resolved`), never text
taken from the address itself.

The page boxes' codes (`bad_key`, `expired`, `resolved`, `signed_out`, ...) are looked up on the
server; an unknown code shows nothing. The only redirect target accepted after sign-in is a
plain `/finance/...` path (`NEXT_PAGE`). These pages are left out of openapi/reporter.json:
they are HTML and form posts for a browser session, not an API.
"""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from meterline.auth import Authenticator
from meterline.errors import (
    Forbidden,
    MeterlineError,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)
from reporter.alerts import to_csv
from reporter.auth import authorize
from reporter.drilldown import drill_down
from reporter.postgres.sessions import PostgresSessionRows
from reporter.sessions import Session, SessionStore
from reporter.settings import ReporterSettings
from reporter.webguard import FinanceHeaders, check_origin, is_tls, read_form

COOKIE = "meterline_finance"
LOGIN_COOKIE = "meterline_finance_login"
LOGIN_FORM_BYTES = 4 * 1024
FORM_BYTES = 32 * 1024
HERE = Path(__file__).parent
NEXT_PAGE = re.compile(r"/finance(/[A-Za-z0-9_.-]+)*")
ERRORS = {
    "bad_key": "That key is unknown or revoked.",
    "no_scope": "That key cannot view finance: it needs the read or admin scope.",
    "expired": "Your session ended. Please sign in again.",
    "form_expired": "The sign-in form expired. Please try again.",
}
NOTICES = {
    "acknowledged": "The alert is now acknowledged.",
    "resolved": "The alert is now resolved.",
    "repaired": "The repair was carried out; its outcome is listed under Repairs.",
    "signed_out": "You are signed out.",
}
KIND_LABELS = {
    "missing_in_stripe": ("Missing in Stripe", "We sent usage that Stripe does not hold."),
    "extra_in_stripe": ("Extra in Stripe", "Stripe holds more usage than we sent."),
    "value_mismatch": ("Value mismatch", "Stripe's figure differs from what we sent."),
    "not_reported": ("Not reported", "Counted usage that was not reported to Stripe."),
    "too_late_for_stripe": (
        "Too late for Stripe",
        "Usage older than Stripe's 35-day window: it cannot be sent as meter events.",
    ),
    "rejected_by_stripe": ("Rejected by Stripe", "Stripe refused the usage we sent."),
}

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape())


def _money(minor: float | Decimal | None, currency: str | None) -> str:
    if minor is None:
        return "—"
    major = float(minor) / 100
    text = f"{major:,.2f}" if major == 0 or abs(major) >= 0.01 else f"{major:,.4f}"
    return f"{text} {(currency or '').upper()}".strip()


def _units(value: float | Decimal | None) -> str:
    if value is None:
        return "—"
    d = Decimal(str(value)).normalize()
    return f"{d:,f}" if d == d.to_integral() else f"{d:f}"


def _when(value: str | datetime | None) -> str:
    if value is None:
        return "—"
    when = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


_env.filters.update(money=_money, units=_units, when=_when)
_env.globals.update(kinds=KIND_LABELS)


def mount(app: FastAPI, reporter: Any) -> None:
    """Add the /finance pages, their static files and their security headers to `app`."""
    settings: ReporterSettings = reporter.settings
    sessions = SessionStore(
        PostgresSessionRows(reporter.pool),
        reporter.clock,
        settings.session_idle_s,
        settings.session_max_s,
    )
    app.add_middleware(FinanceHeaders)
    app.mount("/finance/static", StaticFiles(directory=HERE / "static"), name="finance-static")
    _sign_in_pages(app, reporter, sessions)
    _alert_pages(app, reporter, sessions)


def _sign_in_pages(app: FastAPI, reporter: Any, sessions: SessionStore) -> None:
    settings: ReporterSettings = reporter.settings

    @app.get("/finance/login", response_class=HTMLResponse)
    def login_form(
        request: Request, error: str = "", message: str = "", next: str = "/finance"
    ) -> Response:
        return _login_page(request, settings, 200, error, _safe_next(next), message)

    @app.post("/finance/login")
    async def login(request: Request) -> Response:
        check_origin(request, settings.public_url)
        form = await read_form(request, LOGIN_FORM_BYTES)
        nxt = _safe_next(form.get("next", "/finance"))
        if not _same(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
            return _login_page(request, settings, 403, "form_expired", nxt)
        key, old = form.get("api_key", "").strip(), request.cookies.get(COOKIE)
        try:
            session_id = await run_in_threadpool(_open, reporter.auth, sessions, key, old)
        except MeterlineError as exc:
            code = "no_scope" if isinstance(exc, Forbidden) else "bad_key"
            return _login_page(request, settings, exc.status, code, nxt)
        response = RedirectResponse(nxt, status_code=303)
        _set_cookie(response, request, settings, COOKIE, session_id)
        response.delete_cookie(LOGIN_COOKIE, path="/finance/login")
        return response

    @app.post("/finance/logout")
    async def logout(request: Request) -> Response:
        check_origin(request, settings.public_url)
        token = request.cookies.get(COOKIE)
        if await run_in_threadpool(sessions.resolve, token) is not None:
            await _checked_form(request, sessions, settings, "read")
            await run_in_threadpool(sessions.end, token)
        response = RedirectResponse("/finance/login?message=signed_out", status_code=303)
        response.delete_cookie(COOKIE, path="/finance")
        return response


def _alert_pages(app: FastAPI, reporter: Any, sessions: SessionStore) -> None:
    settings: ReporterSettings = reporter.settings

    @app.get("/finance", response_class=HTMLResponse)
    def overview(request: Request, message: str = "") -> HTMLResponse:
        session = signed_in_session(request, sessions, "read")
        tenant, store = session.principal.tenant_id, reporter.store
        live = [a.as_dict() for a in store.alerts(tenant) if a.status != "resolved"]
        resolved = [a.as_dict() for a in store.alerts(tenant, "resolved", limit=10)]
        runs = [r.as_dict() for r in store.runs(tenant, 30)]
        return signed_in_page(
            "overview.html", session, message, live=live, resolved=resolved, runs=runs,
            totals=store.totals(tenant),
        )  # fmt: skip

    @app.get("/finance/alerts/{alert_id}", response_class=HTMLResponse)
    def detail(request: Request, alert_id: int, message: str = "") -> HTMLResponse:
        session = signed_in_session(request, sessions, "read")
        alert = reporter.store.alert(session.principal.tenant_id, alert_id)
        return signed_in_page(
            "alert.html", session, message, alert=alert.as_dict(),
            drill=drill_down(reporter.pool, reporter.summaries, alert),
            offers=reporter.repairs.offers(alert), repairs=reporter.store.repairs(alert_id),
        )  # fmt: skip

    @app.post("/finance/alerts/{alert_id}/status")
    async def change_status(request: Request, alert_id: int) -> Response:
        session, form = await _checked_form(request, sessions, settings, "admin")
        status, note = form.get("status", ""), form.get("note") or None
        tenant = session.principal.tenant_id
        await run_in_threadpool(reporter.store.transition, tenant, alert_id, status, note)
        return _back(alert_id, status)

    @app.post("/finance/alerts/{alert_id}/repair")
    async def repair(request: Request, alert_id: int) -> Response:
        session, form = await _checked_form(request, sessions, settings, "admin")
        who, action = session.principal, form.get("action", "")
        alert = await run_in_threadpool(reporter.store.alert, who.tenant_id, alert_id)
        await run_in_threadpool(reporter.repairs.apply, alert, action, who.key_id)
        return _back(alert_id, "repaired")

    @app.get("/finance/alerts.csv")
    def export(request: Request, status: str | None = None) -> Response:
        session = signed_in_session(request, sessions, "read")
        text = to_csv(reporter.store.alerts(session.principal.tenant_id, status or None))
        headers = {"Content-Disposition": 'attachment; filename="meterline-alerts.csv"'}
        return PlainTextResponse(text, media_type="text/csv", headers=headers)


def login_redirect(request: Request) -> Response:
    """Where a page request without a live session goes (`expired` when it had a cookie)."""
    ended = "&error=expired" if request.cookies.get(COOKIE) else ""
    target = f"/finance/login?next={quote(_safe_next(request.url.path))}{ended}"
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(COOKIE, path="/finance")
    return response


def error_page(exc: MeterlineError) -> Response:
    """A readable page for a refused or impossible action (no JSON for people).

    A 413 also closes the connection, so the server stops receiving the unread body.
    """
    message = exc.message
    if isinstance(exc, ValidationFailed):
        message = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
    page = _page("error.html", status=exc.status, message=message)
    if isinstance(exc, PayloadTooLarge):
        page.headers["Connection"] = "close"
    return page


def signed_in_session(request: Request, sessions: SessionStore, scope: str) -> Session:
    session = sessions.resolve(request.cookies.get(COOKIE))
    if session is None:
        raise Unauthorized("please sign in with an API key")
    if not session.allows(scope):
        raise Forbidden(f"your key lacks the {scope!r} scope needed for this action")
    return session


def _open(auth: Authenticator, sessions: SessionStore, key: str, old: str | None) -> str:
    """A new session for a key that may read (ending the browser's previous one); its id."""
    who = authorize(auth, f"Bearer {key}", "read")
    sessions.end(old)
    return sessions.start(who)


async def _checked_form(
    request: Request, sessions: SessionStore, settings: ReporterSettings, scope: str
) -> tuple[Session, dict[str, str]]:
    """The session and form of a post that may change something.

    Raises Forbidden for a foreign origin or a missing or wrong CSRF token, Unauthorized
    without a live session, PayloadTooLarge past FORM_BYTES: all before anything changes.
    """
    check_origin(request, settings.public_url)
    session = await run_in_threadpool(signed_in_session, request, sessions, scope)
    form = await read_form(request, FORM_BYTES)
    if not _same(form.get("csrf"), session.csrf_token):
        raise Forbidden("this form expired or did not come from this page; open it again")
    return session, form


def _login_page(
    request: Request,
    settings: ReporterSettings,
    status: int,
    error: str,
    nxt: str,
    message: str = "",
) -> Response:
    token = request.cookies.get(LOGIN_COOKIE) or ""
    if not 40 <= len(token) <= 64:
        token = secrets.token_urlsafe(32)
    response = _page(
        "login.html", status=status, error=ERRORS.get(error), notice=NOTICES.get(message),
        next=nxt, csrf=token, max_hours=settings.session_max_s // 3600,
    )  # fmt: skip
    _set_cookie(response, request, settings, LOGIN_COOKIE, token, "/finance/login", 3600)
    return response


def signed_in_page(name: str, session: Session, message: str, **context: Any) -> HTMLResponse:
    who = session.principal
    return _page(
        name, who=who, csrf=session.csrf_token, notice=NOTICES.get(message),
        can_admin=session.allows("admin"), **context,
    )  # fmt: skip


def _set_cookie(
    response: Response,
    request: Request,
    settings: ReporterSettings,
    name: str,
    value: str,
    path: str = "/finance",
    max_age: int | None = None,
) -> None:
    secure = is_tls(request) if settings.cookie_secure == "auto" else settings.cookie_secure
    response.set_cookie(
        name, value, max_age=max_age or settings.session_max_s, path=path, httponly=True,
        samesite="strict", secure=bool(secure),
    )  # fmt: skip


def _same(sent: str | None, expected: str | None) -> bool:
    if not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context), status_code=status)


def _back(alert_id: int, notice: str) -> Response:
    return RedirectResponse(f"/finance/alerts/{alert_id}?message={notice}", status_code=303)


def _safe_next(target: str) -> str:
    return target if NEXT_PAGE.fullmatch(target) else "/finance"
