"""Request and response shapes of the billing API, with examples for the OpenAPI document."""

from __future__ import annotations

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
