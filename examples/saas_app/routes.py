"""Sign-up, pricing, checkout, the dashboard and using a feature."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from .accounts import COOKIE, new_account
from .charts import usage_chart
from .meterline_api import Meterline
from .web import Api, Fields, Signed, field, go, number, render, subscribed

router = APIRouter()
ACTIVATION_WAIT_S = 10.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    if request.app.state.cookies.load(request.cookies.get(COOKIE)):
        return go("/dashboard")
    return render(request, "signup.html", account=None)


@router.post("/signup")
def signup(request: Request, form: Fields) -> Response:
    made = new_account(field(form, "name", 60))
    response = go("/pricing", f"Welcome, {made.name}! Pick a plan.")
    cookie = request.app.state.cookies.dump(made)
    response.set_cookie(COOKIE, cookie, httponly=True, samesite="lax")
    return response


@router.post("/signout")
def signout() -> Response:
    response = go("/")
    response.delete_cookie(COOKIE)
    return response


@router.get("/pricing", response_class=HTMLResponse)
def pricing(request: Request, me: Signed, api: Api) -> Response:
    overview = api.overview(me.id)
    current = overview["plan"] if overview else None
    catalog = api.catalog()
    names = {f["key"]: f["name"] for f in catalog["features"]}
    return render(request, "pricing.html", account=me, catalog=catalog, names=names,
                  current=current, subscribed=subscribed(overview))  # fmt: skip


@router.post("/checkout")
def checkout(request: Request, me: Signed, api: Api, form: Fields) -> Response:
    """To Stripe Checkout, which comes back to `/checkout/done` (or `/pricing` on cancel)."""
    plan = field(form, "plan")
    base = request.app.state.settings.public_url
    done = f"{base}/checkout/done?session={{CHECKOUT_SESSION_ID}}&plan={quote(plan)}"
    return RedirectResponse(api.checkout(me.id, plan, done, f"{base}/pricing"), 303)


@router.get("/checkout/done")
def checkout_done(me: Signed, api: Api, plan: str = "") -> Response:
    """Stripe sent the user back; the plan is active once Meterline has had the webhook."""
    deadline = time.monotonic() + ACTIVATION_WAIT_S
    while time.monotonic() < deadline:
        overview = api.overview(me.id)
        if subscribed(overview) and overview and overview["plan"] == plan:
            return go("/dashboard", f"You are on {plan.title()} now.")
        time.sleep(0.3)
    return go("/dashboard", "Payment received; your plan starts in a moment.")


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, me: Signed, api: Api) -> Response:
    overview = api.overview(me.id)
    features = overview["features"] if overview else _metered(api.decisions(me.id))
    catalog = api.catalog()
    return render(
        request,
        "dashboard.html",
        account=me,
        overview=overview,
        features=features,
        charts=_charts(api, me.id, features, catalog),
        names={f["key"]: f["name"] for f in catalog["features"]},
        subscribed=subscribed(overview),
        open_invoice=_open_invoice(overview),
    )


@router.post("/use")
def use(me: Signed, api: Api, form: Fields) -> Response:
    feature, amount = field(form, "feature"), number(form, "amount", 1, 100_000)
    decision = api.consume(me.id, feature, amount)
    if decision.has_access:
        return go("/dashboard", f"Recorded {amount}: {decision.used} used so far.")
    return go("/dashboard", f"Refused ({decision.reason}): upgrade for more {feature}.")


def _charts(
    api: Meterline, customer: str, features: list[dict[str, Any]], catalog: dict[str, Any]
) -> dict[str, Markup]:
    """An SVG chart per metered feature (the chart escapes what it prints)."""
    meters = {f["key"]: f["meter"] for f in catalog["features"]}
    return {
        f["feature"]: Markup(usage_chart(f["feature"], api.usage(customer, meters[f["feature"]])))
        for f in features
        if meters.get(f["feature"])
    }


def _open_invoice(overview: dict[str, Any] | None) -> dict[str, Any] | None:
    invoices = (overview or {}).get("invoices") or []
    return next((i for i in invoices if i["status"] == "open"), None)


def _metered(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decisions of metered features (a customer Meterline has not seen yet)."""
    return [d for d in decisions if d.get("limit") is not None or d.get("used") is not None]
