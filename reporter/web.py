"""The /finance pages: server-rendered HTML (Jinja2), no JavaScript build, no client state.

Authentication: the person pastes an API key of their tenant once on /finance/login. The
server checks it (scope `read` at least) and keeps it in a cookie that is HttpOnly (scripts
cannot read it), SameSite=Strict (no other site can make the browser send it, which is also
what protects the forms from cross-site requests), scoped to Path=/finance, Secure when
`METERLINE_REPORTER_COOKIE_SECURE=true` (set it behind HTTPS), and expiring after 12 hours.
Every request re-checks the key, so a revoked key stops working within the auth cache TTL.
Viewing needs `read`; acknowledging, resolving and repairs need `admin`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from meterline.errors import Forbidden, MeterlineError, Unauthorized
from meterline.tenants import Principal
from reporter.alerts import to_csv
from reporter.auth import authorize
from reporter.drilldown import drill_down

COOKIE = "meterline_finance"
COOKIE_MAX_AGE = 12 * 3600
HERE = Path(__file__).parent
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
    app.mount("/finance/static", StaticFiles(directory=HERE / "static"), name="finance-static")
    settings = reporter.settings

    @app.get("/finance/login", response_class=HTMLResponse)
    def login_form(error: str | None = None, next: str = "/finance") -> HTMLResponse:
        return _page("login.html", error=error, next=_safe_next(next))

    @app.post("/finance/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        key, nxt = form.get("api_key", "").strip(), _safe_next(form.get("next", "/finance"))
        try:
            authorize(reporter.auth, f"Bearer {key}", "read")
        except MeterlineError as exc:
            return _page("login.html", status=401, error=exc.message, next=nxt)
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(
            COOKIE, key, max_age=COOKIE_MAX_AGE, path="/finance", httponly=True,
            samesite="strict", secure=settings.cookie_secure,
        )  # fmt: skip
        return response

    @app.post("/finance/logout")
    def logout() -> Response:
        response = RedirectResponse("/finance/login", status_code=303)
        response.delete_cookie(COOKIE, path="/finance")
        return response

    @app.get("/finance", response_class=HTMLResponse)
    def overview(request: Request, message: str | None = None) -> HTMLResponse:
        who = _who(request, reporter, "read")
        store = reporter.store
        live = [a.as_dict() for a in store.alerts(who.tenant_id) if a.status != "resolved"]
        resolved = [a.as_dict() for a in store.alerts(who.tenant_id, "resolved", limit=10)]
        runs = [r.as_dict() for r in store.runs(who.tenant_id, 30)]
        return _page(
            "overview.html", who=who, live=live, resolved=resolved, runs=runs,
            totals=store.totals(who.tenant_id), message=message, can_admin="admin" in who.scopes,
        )  # fmt: skip

    @app.get("/finance/alerts/{alert_id}", response_class=HTMLResponse)
    def detail(request: Request, alert_id: int, message: str | None = None) -> HTMLResponse:
        who = _who(request, reporter, "read")
        alert = reporter.store.alert(who.tenant_id, alert_id)
        return _page(
            "alert.html", who=who, alert=alert.as_dict(), message=message,
            drill=drill_down(reporter.pool, reporter.summaries, alert),
            offers=reporter.repairs.offers(alert), repairs=reporter.store.repairs(alert_id),
            can_admin="admin" in who.scopes,
        )  # fmt: skip

    @app.post("/finance/alerts/{alert_id}/status")
    async def change_status(request: Request, alert_id: int) -> Response:
        who = _who(request, reporter, "admin")
        form = await _form(request)
        status = form.get("status", "")
        reporter.store.transition(who.tenant_id, alert_id, status, form.get("note") or None)
        return _back(alert_id, f"Alert {alert_id} is now {status}.")

    @app.post("/finance/alerts/{alert_id}/repair")
    async def repair(request: Request, alert_id: int) -> Response:
        who = _who(request, reporter, "admin")
        form = await _form(request)
        alert = reporter.store.alert(who.tenant_id, alert_id)
        outcome = reporter.repairs.apply(alert, form.get("action", ""), who.key_id)
        return _back(alert_id, f"Repair done: {outcome}.")

    @app.get("/finance/alerts.csv")
    def export(request: Request, status: str | None = None) -> Response:
        who = _who(request, reporter, "read")
        text = to_csv(reporter.store.alerts(who.tenant_id, status or None))
        headers = {"Content-Disposition": 'attachment; filename="meterline-alerts.csv"'}
        return PlainTextResponse(text, media_type="text/csv", headers=headers)


def login_redirect(request: Request) -> Response:
    """Where a page request without a valid cookie goes."""
    return RedirectResponse(f"/finance/login?next={quote(request.url.path)}", status_code=303)


def _who(request: Request, reporter: Any, scope: str) -> Principal:
    key = request.cookies.get(COOKIE)
    if not key:
        raise Unauthorized("please sign in with an API key")
    try:
        principal: Principal = authorize(reporter.auth, f"Bearer {key}", scope)
    except Forbidden:
        raise Forbidden(f"your key lacks the {scope!r} scope needed for this action") from None
    return principal


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context), status_code=status)


def _back(alert_id: int, message: str) -> Response:
    return RedirectResponse(f"/finance/alerts/{alert_id}?message={quote(message)}", status_code=303)


def _safe_next(target: str) -> str:
    return target if target.startswith("/finance") and "//" not in target else "/finance"


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def error_page(exc: MeterlineError) -> Response:
    """A readable page for a refused or impossible action (no JSON for people)."""
    return _page("error.html", status=exc.status, message=exc.message)
