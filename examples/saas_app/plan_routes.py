"""Plan changes with their preview, cancel at the period end and resume."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from .web import Api, Fields, Signed, field, go, number, render

router = APIRouter()


@router.get("/plan/{plan}/preview", response_class=HTMLResponse)
def preview(request: Request, me: Signed, api: Api, plan: str) -> Response:
    """What the change costs today and next, before the user confirms it."""
    return render(request, "preview.html", account=me, preview=api.preview(me.id, plan))


@router.post("/plan")
def change(me: Signed, api: Api, form: Fields) -> Response:
    """The change at the preview's `proration_date`: charged exactly what the preview showed."""
    plan, proration_date = field(form, "plan"), number(form, "proration_date", 0, 2**40)
    done = api.change(me.id, plan, proration_date)
    invoice = done.get("invoice")
    if done["direction"] == "upgrade" and invoice:
        charged = f"${invoice['amount_due'] / 100:,.2f}"
        return go("/dashboard", f"Upgraded to {plan.title()}: charged {charged}.")
    return go("/dashboard", f"Your plan changes to {plan.title()} at the end of the period.")


@router.post("/cancel")
def cancel(me: Signed, api: Api) -> Response:
    api.cancel(me.id)
    return go("/dashboard", "Your subscription ends at the end of the period.")


@router.post("/resume")
def resume(me: Signed, api: Api) -> Response:
    api.cancel(me.id, resume=True)
    return go("/dashboard", "Welcome back: your subscription goes on.")
