"""Request and response shapes of the billing API, with examples for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from meterline.inputs import IDENTIFIER

URL_PATTERN = r"^https?://[^\s]+$"
KeyField = Field(None, min_length=1, max_length=64, pattern=IDENTIFIER)


class CheckoutIn(BaseModel):
    """Exactly one of `plan` (a subscription) and `credit_pack` (a one-time purchase)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "plan": "basic",
                    "success_url": "https://app.example/billing?session={CHECKOUT_SESSION_ID}",
                    "cancel_url": "https://app.example/pricing",
                },
                {
                    "credit_pack": "calls_10k",
                    "success_url": "https://app.example/billing",
                    "cancel_url": "https://app.example/billing",
                },
            ]
        },
    )
    plan: str | None = KeyField
    credit_pack: str | None = KeyField
    success_url: str = Field(max_length=2048, pattern=URL_PATTERN)
    cancel_url: str = Field(max_length=2048, pattern=URL_PATTERN)


class CheckoutOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "session_id": "cs_test_a1b2c3",
                    "url": "https://checkout.stripe.com/c/pay/cs_test_a1b2c3",
                    "kind": "plan",
                    "item": "basic",
                }
            ]
        }
    )
    session_id: str
    url: str = Field(description="send the user here; Stripe's hosted Checkout page")
    kind: str = Field(description="plan | credit_pack")
    item: str = Field(description="the plan or credit pack key")


class PlanChangeIn(BaseModel):
    """The plan to move to; `proration_date` (Unix seconds, in the current period) is the one a
    preview answered, so the change charges exactly what the preview showed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"plan": "power", "proration_date": 1796036400}]},
    )
    plan: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    proration_date: int | None = Field(None, ge=0, le=2**40)


class LineOut(BaseModel):
    description: str
    amount: int = Field(description="minor units; negative for a credit")
    proration: bool
    period_start: int
    period_end: int


class InvoicePreviewOut(BaseModel):
    amount_due: int
    currency: str
    date: int | None = Field(description="when it is charged (Unix seconds)")
    lines: list[LineOut]


class PlanPreviewOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "plan": "power",
                    "direction": "upgrade",
                    "proration_date": 1796036400,
                    "effective_at": 1796036400,
                    "due_today": {
                        "amount_due": 2533,
                        "currency": "usd",
                        "date": 1796036400,
                        "lines": [
                            {"description": "Unused time on basic", "amount": -465,
                             "proration": True, "period_start": 1796036400,
                             "period_end": 1797242400},
                            {"description": "Remaining time on power", "amount": 2998,
                             "proration": True, "period_start": 1796036400,
                             "period_end": 1797242400},
                        ],
                    },
                    "next_invoice": {"amount_due": 4900, "currency": "usd",
                                     "date": 1797242400, "lines": []},
                }
            ]
        }
    )  # fmt: skip
    plan: str
    direction: str = Field(description="upgrade (now, prorated) | downgrade (at the period end)")
    proration_date: int
    effective_at: int
    due_today: InvoicePreviewOut | None = Field(description="null for a downgrade")
    next_invoice: InvoicePreviewOut


class InvoiceOut(BaseModel):
    id: str
    status: str
    amount_due: int
    amount_paid: int
    currency: str
    hosted_invoice_url: str | None
    created: int


class PlanChangeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"plan": "basic", "direction": "downgrade", "effective_at": 1797242400,
                 "invoice": None}
            ]
        }
    )  # fmt: skip
    plan: str
    direction: str
    effective_at: int
    invoice: InvoiceOut | None = Field(description="the proration invoice of an upgrade")


class PendingOut(BaseModel):
    pending_change: dict[str, object] | None = Field(
        description='{"plan", "effective_at"} of a downgrade scheduled for the period end'
    )


class PortalIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"return_url": "https://app.example/billing"}]},
    )
    return_url: str = Field(max_length=2048, pattern=URL_PATTERN)


class UrlOut(BaseModel):
    url: str


class SetupIntentOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "seti_1",
                    "client_secret": "seti_1_secret_x",
                    "status": "requires_payment_method",
                }
            ]
        }
    )
    id: str
    client_secret: str | None = Field(description="for Stripe.js confirmSetup; do not store it")
    status: str


class CardOut(BaseModel):
    id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    default: bool


class CardsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"data": [{"id": "pm_1", "brand": "visa", "last4": "4242", "exp_month": 12,
                           "exp_year": 2030, "default": True}]}
            ]
        }
    )  # fmt: skip
    data: list[CardOut]


class SubscriptionStateOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"plan": "basic", "status": "active", "cancel_at_period_end": True,
                 "current_period_end": "2026-12-31T00:00:00Z"}
            ]
        }
    )  # fmt: skip
    plan: str
    status: str
    cancel_at_period_end: bool
    current_period_end: str | None


class FeatureUsageOut(BaseModel):
    feature: str
    used: float | None
    limit: float | None = Field(description="plan + grants; null: unlimited")
    remaining: float | None
    overage: str | None
    period: dict[str, str] | None
    has_access: bool


class UpcomingInvoiceOut(InvoicePreviewOut):
    metered_so_far: int = Field(description="the metered lines of the upcoming invoice, so far")


class DunningOut(BaseModel):
    """The dunning sequence of an unpaid invoice (meterline/dunning/README.md); the same shape
    is the `data` of every `dunning.*` outbound event."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"invoice": "in_1", "subscription": "sub_1", "step": "reminder",
                 "since": "2026-12-01T00:00:00Z",
                 "steps": {"notice": "2026-12-01T00:00:00Z",
                           "reminder": "2026-12-04T00:00:00Z"},
                 "update_url": "https://invoice.stripe.com/i/in_1", "amount_due": 4900,
                 "currency": "usd", "attempt_count": 2,
                 "next_payment_attempt": "2026-12-09T00:00:00Z", "next_step": None,
                 "next_step_at": None, "plan": "basic", "downgraded_to": None,
                 "restored": False, "ended_at": None}
            ]
        }
    )  # fmt: skip
    invoice: str
    subscription: str | None
    step: str = Field(
        description="started | notice | reminder | final_warning | downgraded | recovery_offer"
    )
    since: str = Field(description="the first failed payment")
    steps: dict[str, str] = Field(description="each step taken, with when")
    update_url: str | None = Field(description="the invoice's hosted page: paying it ends this")
    amount_due: int
    currency: str
    attempt_count: int
    next_payment_attempt: str | None = Field(description="Stripe's next automatic retry")
    next_step: str | None
    next_step_at: str | None
    plan: str | None = Field(description="the plan when the payment failed")
    downgraded_to: str | None = Field(description="the catalog's fallback plan, once downgraded")
    restored: bool
    ended_at: str | None


class BillingOut(BaseModel):
    """One answer for a billing dashboard."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer": "cust_42",
                    "plan": "power",
                    "subscription": {"plan": "power", "status": "active",
                                     "current_period_start": "2026-12-01T00:00:00Z",
                                     "current_period_end": "2027-01-01T00:00:00Z",
                                     "cancel_at_period_end": False},
                    "pending_change": {"plan": "basic", "effective_at": 1798761600},
                    "features": [{"feature": "api_calls", "used": 120000, "limit": 100000,
                                  "remaining": 0, "overage": "allow",
                                  "period": {"start": "2026-12-01T00:00:00Z",
                                             "end": "2027-01-01T00:00:00Z"},
                                  "has_access": True}],
                    "upcoming_invoice": {"amount_due": 5900, "currency": "usd",
                                         "date": 1798761600, "metered_so_far": 1000,
                                         "lines": []},
                    "invoices": [{"id": "in_1", "status": "paid", "amount_due": 4900,
                                  "amount_paid": 4900, "currency": "usd",
                                  "hosted_invoice_url": "https://invoice.stripe.com/i/in_1",
                                  "created": 1796083200}],
                    "default_payment_method": {"id": "pm_1", "brand": "visa", "last4": "4242"},
                    "dunning": None,
                }
            ]
        }
    )  # fmt: skip
    customer: str
    plan: str | None = Field(description="the plan that applies now (after payment policies)")
    subscription: dict[str, object] | None
    pending_change: dict[str, object] | None
    features: list[FeatureUsageOut]
    upcoming_invoice: UpcomingInvoiceOut | None
    invoices: list[InvoiceOut]
    default_payment_method: dict[str, str | None] | None
    dunning: DunningOut | None = Field(description="an unpaid invoice's sequence; null: none")


class SeatsIn(BaseModel):
    """`in_use`: the seats taken now, as the app counts them; `seats` may not go below it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"seats": 8, "in_use": 5, "proration_date": 1796036400}]},
    )
    seats: int = Field(ge=1, le=100_000)
    in_use: int = Field(ge=0, le=100_000)
    proration_date: int | None = Field(None, ge=0, le=2**40)


class SeatsPreviewOut(BaseModel):
    seats: int
    current: int
    proration_date: int
    due_today: InvoicePreviewOut | None = Field(description="null when seats go down")
    next_invoice: InvoicePreviewOut


class SeatsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"seats": 8, "previous": 5, "invoice": None}]}
    )
    seats: int
    previous: int
    invoice: InvoiceOut | None = Field(description="the prorated charge of added seats")


class PlanOut(BaseModel):
    key: str
    name: str
    default: bool
    price: dict[str, Any] | None = Field(description="amount (minor units), currency, interval")
    metered_prices: dict[str, dict[str, Any]]
    features: dict[str, Any] = Field(description="each feature's entitlement in the plan")


class CreditPackOut(BaseModel):
    key: str
    name: str
    price: dict[str, Any]
    credits: dict[str, Any]


class FeatureOut(BaseModel):
    key: str
    name: str
    kind: str = Field(description="boolean | metered | static")
    meter: str | None = Field(description="the meter of a metered feature (for GET /v1/usage)")


class PlansOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "plans": [
                        {"key": "free", "name": "Free", "default": True, "price": None,
                         "metered_prices": {},
                         "features": {"api_calls": {"limit": 50, "reset": "week",
                                                    "overage": "block"}}},
                        {"key": "basic", "name": "Basic", "default": False,
                         "price": {"amount": 900, "currency": "usd", "interval": "month"},
                         "metered_prices": {},
                         "features": {"api_calls": {"limit": 1000, "reset": "month",
                                                    "overage": "block"}}},
                    ],
                    "credit_packs": [
                        {"key": "calls_10k", "name": "10,000 API calls",
                         "price": {"amount": 1500, "currency": "usd"},
                         "credits": {"api_calls": 10000}}
                    ],
                    "features": [
                        {"key": "api_calls", "name": "API calls", "kind": "metered",
                         "meter": "api_calls"}
                    ],
                }
            ]
        }
    )  # fmt: skip
    plans: list[PlanOut]
    credit_packs: list[CreditPackOut]
    features: list[FeatureOut]
