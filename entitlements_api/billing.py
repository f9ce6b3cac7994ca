"""The billing API for an app's backend, under `/v1/customers/{customer}/...`.

Scope `billing` (or `admin`, which holds every right of its tenant). An app's backend starts
checkouts and plan changes for its signed-in users; it needs no catalog or key rights, so a
leaked billing key cannot rewrite prices or mint keys. The customer is created on first use.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from entitlements_api.access import deps_of, principal
from entitlements_api.billing_schemas import (
    BillingOut,
    CardsOut,
    CheckoutIn,
    CheckoutOut,
    PendingOut,
    PlanChangeIn,
    PlanChangeOut,
    PlanPreviewOut,
    PortalIn,
    SeatsIn,
    SeatsOut,
    SeatsPreviewOut,
    SetupIntentOut,
    SubscriptionStateOut,
    UrlOut,
)
from entitlements_api.responses import json_response
from entitlements_api.schemas import CustomerPath, ErrorOut
from meterline.billing import (
    BillingAccount,
    BillingCheckout,
    CheckoutRequest,
    PlanChanges,
    Seats,
)
from meterline.billing.plan_change import ChangePreview
from meterline.errors import NotFound
from meterline.stripe.plan_changes import InvoicePreview

router = APIRouter(prefix="/v1/customers", tags=["billing"])
SCOPES = ("billing", "admin")
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing, unknown or revoked API key"},
    403: {"model": ErrorOut, "description": "the key lacks the billing (or admin) scope"},
    404: {"model": ErrorOut, "description": "Stripe is not configured, or no catalog"},
    409: {"model": ErrorOut, "description": "the request conflicts with the customer's state"},
    422: {"model": ErrorOut, "description": "invalid input; each problem names its field"},
}


def _billing(request: Request) -> BillingCheckout:
    billing = deps_of(request).billing
    if billing is None:
        raise NotFound("Stripe is not configured")
    return billing


def _account(request: Request) -> BillingAccount:
    account = deps_of(request).billing_account
    if account is None:
        raise NotFound("Stripe is not configured")
    return account


def _plans(request: Request) -> PlanChanges:
    plans = deps_of(request).plan_changes
    if plans is None:
        raise NotFound("Stripe is not configured")
    return plans


@router.post(
    "/{customer}/checkout",
    summary="Start a Stripe Checkout for a plan or a credit pack",
    status_code=201,
    responses={201: {"model": CheckoutOut}, **ERRORS},
)
async def start_checkout(
    request: Request, body: CheckoutIn, customer: str = CustomerPath
) -> Response:
    """A plan opens a subscription-mode session, a credit pack a payment-mode one; send the user
    to `url`. When Stripe reports the session completed (`checkout.session.completed`), the plan
    becomes active or the pack's credits become grants, once per session. 409 when the customer
    already has a live subscription (change the plan instead)."""
    who = principal(request, *SCOPES)
    req = CheckoutRequest(body.plan, body.credit_pack, body.success_url, body.cancel_url)
    session = await asyncio.to_thread(_billing(request).start, who.tenant_id, customer, req)
    kind = "plan" if body.plan else "credit_pack"
    out = {
        "session_id": session.id,
        "url": session.url,
        "kind": kind,
        "item": body.plan or body.credit_pack,
    }
    return json_response(out, 201)


@router.post(
    "/{customer}/plan/preview",
    summary="Preview a plan change: due today (prorations) and the next invoice",
    responses={200: {"model": PlanPreviewOut}, **ERRORS},
)
async def preview_plan_change(
    request: Request, body: PlanChangeIn, customer: str = CustomerPath
) -> Response:
    """An upgrade (a higher base price) takes effect now: `due_today` is the prorated charge
    with its lines. A downgrade takes effect at the period end (`effective_at`). Pass the
    answer's `proration_date` to `POST .../plan` to be charged exactly `due_today`."""
    who = principal(request, *SCOPES)
    found = await asyncio.to_thread(
        _plans(request).preview, who.tenant_id, customer, body.plan, body.proration_date
    )
    return json_response(_preview_out(found))


@router.post(
    "/{customer}/plan",
    summary="Change the plan: an upgrade now (prorated), a downgrade at the period end",
    responses={200: {"model": PlanChangeOut}, **ERRORS},
)
async def change_plan(
    request: Request, body: PlanChangeIn, customer: str = CustomerPath
) -> Response:
    """An upgrade invoices its prorations at once and the plan applies before the answer; a
    downgrade is scheduled (pending until `effective_at`, see `GET .../plan/pending`). 409
    without a Stripe subscription (start a checkout) or for the current plan."""
    who = principal(request, *SCOPES)
    result = await asyncio.to_thread(
        _plans(request).change, who.tenant_id, customer, body.plan, body.proration_date
    )
    body_out = asdict(result)
    return json_response(body_out)


@router.get(
    "/{customer}/plan/pending",
    summary="The plan change scheduled for the period end, if any",
    responses={200: {"model": PendingOut}, **ERRORS},
)
async def pending_change(request: Request, customer: str = CustomerPath) -> Response:
    who = principal(request, *SCOPES)
    found = await asyncio.to_thread(_plans(request).pending, who.tenant_id, customer)
    return json_response({"pending_change": None if found is None else asdict(found)})


@router.delete(
    "/{customer}/plan/pending",
    summary="Drop the scheduled plan change (the current plan goes on)",
    status_code=204,
    responses=ERRORS,
)
async def drop_pending_change(request: Request, customer: str = CustomerPath) -> Response:
    who = principal(request, *SCOPES)
    await asyncio.to_thread(_plans(request).cancel_pending, who.tenant_id, customer)
    return Response(status_code=204)


def _preview_out(found: ChangePreview) -> dict[str, Any]:
    return {
        "plan": found.plan,
        "direction": found.direction,
        "proration_date": found.proration_date,
        "effective_at": found.effective_at,
        "due_today": _invoice_preview(found.due_today, found.proration_date),
        "next_invoice": _invoice_preview(
            found.next_invoice, found.next_invoice.next_payment_attempt
        ),
    }


def _invoice_preview(preview: InvoicePreview | None, date: int | None) -> dict[str, Any] | None:
    if preview is None:
        return None
    lines = [asdict(line) for line in preview.lines]
    return {
        "amount_due": preview.amount_due,
        "currency": preview.currency,
        "date": date,
        "lines": lines,
    }


MethodPath = Path(min_length=1, max_length=255, pattern=r"^pm_[A-Za-z0-9_]+$")


async def _cancel(request: Request, customer: str, cancel: bool) -> Response:
    who = principal(request, *SCOPES)
    sub = await asyncio.to_thread(_account(request).cancel, who.tenant_id, customer, cancel)
    state = sub.as_dict()
    keys = ("plan", "status", "cancel_at_period_end", "current_period_end")
    return json_response({k: state[k] for k in keys})


@router.post(
    "/{customer}/subscription/cancel",
    summary="Cancel at the period end (the plan goes on until then)",
    responses={200: {"model": SubscriptionStateOut}, **ERRORS},
)
async def cancel_at_period_end(request: Request, customer: str = CustomerPath) -> Response:
    """The subscription ends at `current_period_end`; the plan then falls back as the catalog's
    `canceled` payment policy says. A scheduled downgrade is dropped. 409 without a live
    Stripe subscription."""
    return await _cancel(request, customer, True)


@router.post(
    "/{customer}/subscription/resume",
    summary="Undo a cancel at the period end",
    responses={200: {"model": SubscriptionStateOut}, **ERRORS},
)
async def resume(request: Request, customer: str = CustomerPath) -> Response:
    return await _cancel(request, customer, False)


@router.post(
    "/{customer}/portal",
    summary="A Stripe customer portal link (short-lived: create it when the user clicks)",
    responses={200: {"model": UrlOut}, **ERRORS},
)
async def portal(request: Request, body: PortalIn, customer: str = CustomerPath) -> Response:
    who = principal(request, *SCOPES)
    url = await asyncio.to_thread(
        _account(request).portal_url, who.tenant_id, customer, body.return_url
    )
    return json_response({"url": url})


@router.post(
    "/{customer}/payment_methods/setup_intent",
    summary="A SetupIntent to add a card with Stripe.js",
    status_code=201,
    responses={201: {"model": SetupIntentOut}, **ERRORS},
)
async def setup_intent(request: Request, customer: str = CustomerPath) -> Response:
    who = principal(request, *SCOPES)
    intent = await asyncio.to_thread(_account(request).setup_intent, who.tenant_id, customer)
    return json_response(asdict(intent), 201)


@router.get(
    "/{customer}/payment_methods",
    summary="The customer's cards, the default one marked",
    responses={200: {"model": CardsOut}, **ERRORS},
)
async def payment_methods(request: Request, customer: str = CustomerPath) -> Response:
    who = principal(request, *SCOPES)
    cards = await asyncio.to_thread(_account(request).cards, who.tenant_id, customer)
    return json_response({"data": [asdict(c) for c in cards]})


@router.post(
    "/{customer}/payment_methods/{method}/default",
    summary="Make a card the default for invoices",
    status_code=204,
    responses=ERRORS,
)
async def set_default_method(
    request: Request, customer: str = CustomerPath, method: str = MethodPath
) -> Response:
    """404 when the card is not the customer's."""
    who = principal(request, *SCOPES)
    await asyncio.to_thread(_account(request).set_default, who.tenant_id, customer, method)
    return Response(status_code=204)


@router.delete(
    "/{customer}/payment_methods/{method}",
    summary="Detach a card (permanent)",
    status_code=204,
    responses=ERRORS,
)
async def detach_method(
    request: Request, customer: str = CustomerPath, method: str = MethodPath
) -> Response:
    """404 when the card is not the customer's."""
    who = principal(request, *SCOPES)
    await asyncio.to_thread(_account(request).detach, who.tenant_id, customer, method)
    return Response(status_code=204)


@router.get(
    "/{customer}/billing",
    summary="Everything a billing dashboard shows, in one call",
    responses={200: {"model": BillingOut}, **ERRORS},
)
async def billing_overview(request: Request, customer: str = CustomerPath) -> Response:
    """Plan and status, period, pending change, cancel_at_period_end, each metered feature's
    usage against its limit, the upcoming invoice with the metered cost so far, recent invoices
    with their hosted links, and the default card's brand and last 4. 404 for an unknown
    customer."""
    who = principal(request, *SCOPES)
    overview = deps_of(request).billing_overview
    if overview is None:
        raise NotFound("Stripe is not configured")
    return json_response(await asyncio.to_thread(overview.get, who.tenant_id, customer))


def _seats(request: Request) -> Seats:
    seats = deps_of(request).seats
    if seats is None:
        raise NotFound("Stripe is not configured")
    return seats


@router.post(
    "/{customer}/seats/preview",
    summary="Preview a change of seats (prorated)",
    responses={200: {"model": SeatsPreviewOut}, **ERRORS},
)
async def preview_seats(request: Request, body: SeatsIn, customer: str = CustomerPath) -> Response:
    """For a plan with a `seats` feature: the base price's quantity. 409 below `in_use`."""
    who = principal(request, *SCOPES)
    found = await asyncio.to_thread(
        _seats(request).preview, who.tenant_id, customer, body.seats, body.in_use,
        body.proration_date,
    )  # fmt: skip
    nxt = found.next_invoice
    return json_response(
        {
            "seats": found.seats,
            "current": found.current,
            "proration_date": found.proration_date,
            "due_today": _invoice_preview(found.due_today, found.proration_date),
            "next_invoice": _invoice_preview(nxt, nxt.next_payment_attempt),
        }
    )


@router.post(
    "/{customer}/seats",
    summary="Change the seats now: added seats charged prorated, removed ones credited",
    responses={200: {"model": SeatsOut}, **ERRORS},
)
async def change_seats(request: Request, body: SeatsIn, customer: str = CustomerPath) -> Response:
    """Never below the seats in use (`in_use`, reported by the app): 409 saying both numbers."""
    who = principal(request, *SCOPES)
    done = await asyncio.to_thread(
        _seats(request).change, who.tenant_id, customer, body.seats, body.in_use,
        body.proration_date,
    )  # fmt: skip
    return json_response(asdict(done))
