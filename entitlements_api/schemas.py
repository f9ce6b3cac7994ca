"""Request and response shapes, for validation at the boundary and accurate OpenAPI docs.

Responses are written with orjson directly on the hot path; these models document them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from meterline.entitlements import Reason
from meterline.events import refused_character
from meterline.inputs import FREE_TEXT, IDENTIFIER, Instant
from meterline.values import RULE

MAX_CUSTOMER = 128
CustomerPath = Path(
    min_length=1,
    max_length=MAX_CUSTOMER,
    pattern=IDENTIFIER,
    description="the tenant's own customer id (no control characters)",
)


class PeriodOut(BaseModel):
    start: str = Field(description="RFC 3339 UTC, inclusive")
    end: str = Field(description="RFC 3339 UTC, exclusive")


class DecisionOut(BaseModel):
    """One entitlement decision."""

    feature: str
    kind: Literal["metered", "boolean", "static"]
    has_access: bool
    reason: Reason = Field(description="why; one of the documented closed set")
    limit: float | None = Field(
        description="effective limit (plan + grants); null: unlimited. Quantities are exact "
        "decimal JSON numbers (more than 15 digits when a sum needs them)"
    )
    used: float | None = Field(description="usage in the period, pending reservations included")
    remaining: float | None
    overage: Literal["block", "allow"] | None
    plan: str | None = Field(description="the plan that applies now (after payment policies)")
    period: PeriodOut | None = Field(description="the usage period of a metered feature")
    payment_state: Literal["none", "ok", "grace", "fallback"]
    subscription_status: str | None
    grace_ends: str | None = None
    value: Any = Field(None, description="a static feature's value")
    as_of: str


class EntitlementsOut(BaseModel):
    customer: str
    entitlements: list[DecisionOut]


class ConsumeIn(BaseModel):
    """Values are passed through as sent and checked by ingest's own event validation
    (`meterline.events.validate_event`), so consume accepts exactly what ingest accepts; the
    schema below documents those rules."""

    model_config = ConfigDict(extra="forbid")
    amount: Any = Field(
        1,
        description=f"units to consume: a JSON number (never a string or a boolean), {RULE}; "
        "only features on a sum or count meter are consumed, and on a count meter it is 1",
        json_schema_extra={"type": "number", "minimum": 0, "maximum": 1e15},
    )
    event_id: Any = Field(
        description="idempotency key and the usage event's id (one id space with ingest's ids): "
        "1 to 128 characters, no control characters",
        json_schema_extra={
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": "^[^\\u0000-\\u001f\\u007f]+$",
        },
    )


class ConsumeOut(DecisionOut):
    granted: bool
    event_id: str


class ConsumeConflictOut(BaseModel):
    error: Literal["conflict"]
    message: str
    granted: Literal[False]
    event_id: str


class ErrorOut(BaseModel):
    error: str
    message: str | None = None
    errors: list[dict[str, Any]] | None = None


def _event_customer(value: str) -> str:
    """A customer id its events can carry: the event contract's character rule
    (`meterline.events.refused_character`), so no customer is created that ingest refuses."""
    problem = refused_character(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, AfterValidator(_event_customer)] = Field(
        min_length=1, max_length=MAX_CUSTOMER, pattern=IDENTIFIER,
        description="the tenant's own customer id (the characters events may carry: "
        "no control, format or separator character)",
    )  # fmt: skip
    name: str | None = Field(None, max_length=256, pattern=FREE_TEXT)
    email: str | None = Field(None, max_length=256, pattern=IDENTIFIER)


class SubscriptionIn(BaseModel):
    """A manual or lifetime plan (no Stripe subscription); a period must end after it starts."""

    model_config = ConfigDict(extra="forbid")
    plan: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    source: Literal["manual", "lifetime"] = "manual"
    status: Literal["active", "trialing", "past_due", "canceled", "unpaid", "paused"] = "active"
    current_period_start: Instant | None = None
    current_period_end: Instant | None = None


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feature: str = Field(min_length=1, max_length=64, pattern=IDENTIFIER)
    kind: Literal["credit", "top_up", "override"]
    amount: float | None = Field(
        None, ge=0, le=1e15, description=f"{RULE}; null with override: unlimited"
    )
    effective_at: Instant | None = None
    expires_at: Instant | None = None
    note: str | None = Field(None, max_length=1000, pattern=FREE_TEXT)


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scopes: list[Literal["ingest", "read", "admin", "billing"]] = Field(min_length=1)


class CatalogApplyOut(BaseModel):
    version: int
    changed: bool
    changes: list[str]
    stripe: list[str]
