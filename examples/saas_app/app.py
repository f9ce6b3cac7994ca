"""The example app's pages: sign-up, pricing, checkout, the usage dashboard, plan changes with
their preview, cancel and resume. Each page reads what it shows from Meterline at request time
(`meterline_api.py`); the app itself keeps nothing but the signed account cookie."""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from .accounts import COOKIE, Account, Cookies, new_account
from .charts import usage_chart
from .meterline_api import Meterline, MeterlineRefused
from .pages import environment
from .settings import Settings

LIVE = ("active", "trialing", "past_due", "unpaid", "incomplete", "paused")
ACTIVATION_WAIT_S = 10.0


class SignedOut(Exception):
    """The page needs an account: go to sign-up."""


def create_app(settings: Settings, meterline: Meterline | None = None) -> FastAPI:
    app = FastAPI(title="Meterline example: a SaaS app", docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.meterline = meterline or Meterline(settings.entitlements_url, settings.api_key)
    app.state.cookies = Cookies(settings.cookie_secret)
    app.state.templates = environment()
    _errors(app)
    _routes(app)
    return app


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


def _errors(app: FastAPI) -> None:
    @app.exception_handler(SignedOut)
    async def signed_out(_request: Request, _exc: SignedOut) -> Response:
        return go("/")

    @app.exception_handler(MeterlineRefused)
    async def refused(request: Request, exc: MeterlineRefused) -> Response:
        return render(request, "error.html", 502 if exc.status >= 500 else 409, error=exc)


def _routes(app: FastAPI) -> None:
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        if request.app.state.cookies.load(request.cookies.get(COOKIE)):
            return go("/dashboard")
        return render(request, "signup.html", account=None)

    @app.post("/signup")
    def signup(request: Request, form: Fields) -> Response:
        made = new_account(field(form, "name", 60))
        response = go("/pricing", f"Welcome, {made.name}! Pick a plan.")
        response.set_cookie(
            COOKIE, request.app.state.cookies.dump(made), httponly=True, samesite="lax"
        )
        return response

    @app.post("/signout")
    def signout() -> Response:
        response = go("/")
        response.delete_cookie(COOKIE)
        return response

    @app.get("/pricing", response_class=HTMLResponse)
    def pricing(request: Request, me: Signed, api: Api) -> Response:
        overview = api.overview(me.id)
        subscribed = _subscribed(overview)
        current = overview["plan"] if overview else None
        return render(request, "pricing.html", account=me, catalog=api.catalog(),
                      current=current, subscribed=subscribed)  # fmt: skip

    @app.post("/checkout")
    def checkout(request: Request, me: Signed, api: Api, form: Fields) -> Response:
        plan = field(form, "plan")
        base = request.app.state.settings.public_url
        done = f"{base}/checkout/done?session={{CHECKOUT_SESSION_ID}}&plan={quote(plan)}"
        return RedirectResponse(api.checkout(me.id, plan, done, f"{base}/pricing"), 303)

    @app.get("/checkout/done")
    def checkout_done(me: Signed, api: Api, plan: str = "") -> Response:
        """Stripe sent the user back; the plan is active once Meterline has the webhook."""
        deadline = time.monotonic() + ACTIVATION_WAIT_S
        while time.monotonic() < deadline:
            overview = api.overview(me.id)
            if _subscribed(overview) and overview and overview["plan"] == plan:
                return go("/dashboard", f"You are on {plan.title()} now.")
            time.sleep(0.3)
        return go("/dashboard", "Payment received; your plan starts in a moment.")

    @app.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request, me: Signed, api: Api) -> Response:
        overview = api.overview(me.id)
        catalog = api.catalog()
        meters = {f["key"]: f["meter"] for f in catalog["features"]}
        names = {f["key"]: f["name"] for f in catalog["features"]}
        features = overview["features"] if overview else _free(api.decisions(me.id))
        charts = {
            f["feature"]: Markup(usage_chart(f["feature"], api.usage(me.id, meters[f["feature"]])))
            for f in features
            if meters.get(f["feature"])
        }
        return render(
            request,
            "dashboard.html",
            account=me,
            overview=overview,
            features=features,
            charts=charts,
            names=names,
            subscribed=_subscribed(overview),
            open_invoice=_open_invoice(overview),
        )

    @app.post("/use")
    def use(me: Signed, api: Api, form: Fields) -> Response:
        feature, amount = field(form, "feature"), number(form, "amount", 1, 100_000)
        decision = api.consume(me.id, feature, amount)
        if decision.has_access:
            return go("/dashboard", f"Recorded {amount}: {decision.used} used so far.")
        return go("/dashboard", f"Refused ({decision.reason}): upgrade for more {feature}.")

    @app.get("/plan/{plan}/preview", response_class=HTMLResponse)
    def preview(request: Request, me: Signed, api: Api, plan: str) -> Response:
        found = api.preview(me.id, plan)
        return render(request, "preview.html", account=me, preview=found)

    @app.post("/plan")
    def change(me: Signed, api: Api, form: Fields) -> Response:
        plan, proration_date = field(form, "plan"), number(form, "proration_date", 0, 2**40)
        done = api.change(me.id, plan, proration_date)
        invoice = done.get("invoice")
        if done["direction"] == "upgrade" and invoice:
            charged = f"${invoice['amount_due'] / 100:,.2f}"
            return go("/dashboard", f"Upgraded to {plan.title()}: charged {charged}.")
        return go("/dashboard", f"Your plan changes to {plan.title()} at the end of the period.")

    @app.post("/cancel")
    def cancel(me: Signed, api: Api) -> Response:
        api.cancel(me.id)
        return go("/dashboard", "Your subscription ends at the end of the period.")

    @app.post("/resume")
    def resume(me: Signed, api: Api) -> Response:
        api.cancel(me.id, resume=True)
        return go("/dashboard", "Welcome back: your subscription goes on.")


def _subscribed(overview: dict[str, Any] | None) -> bool:
    sub = (overview or {}).get("subscription")
    return bool(sub and sub["status"] in LIVE)


def _open_invoice(overview: dict[str, Any] | None) -> dict[str, Any] | None:
    invoices = (overview or {}).get("invoices") or []
    return next((i for i in invoices if i["status"] == "open"), None)


def _free(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decisions shaped as the billing overview's features (a customer not yet in Meterline)."""
    return [d for d in decisions if d.get("limit") is not None or d.get("used") is not None]
