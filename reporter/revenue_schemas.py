"""The revenue API's answers as OpenAPI schemas (the routes return the rows of
`revenue_report`; these models document them in openapi/reporter.json)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MrrMonth(BaseModel):
    month: str = Field(description="YYYY-MM")
    currency: str
    start_mrr: int = Field(description="minor units")
    new: int
    expansion: int
    contraction: int
    churn: int
    reactivation: int
    end_mrr: int
    arr: int = Field(description="end MRR x 12")
    metered: int = Field(
        description="metered usage billed on the invoices closed (finalized) this month, less "
        "discounts, voided ones excluded; minor units, not part of MRR or ARR"
    )


class MrrOut(BaseModel):
    from_: str = Field(alias="from")
    to: str
    data: list[MrrMonth]


class MovementOut(BaseModel):
    at: str
    customer: str
    currency: str
    kind: str = Field(description="new, expansion, contraction, churn or reactivation")
    amount: int = Field(description="minor units, positive")
    mrr_before: int
    mrr_after: int


class MovementTotal(BaseModel):
    currency: str
    kind: str
    amount: int
    customers: list[str]


class MovementsOut(BaseModel):
    month: str
    data: list[MovementOut]
    totals: list[MovementTotal]


class RetentionRow(BaseModel):
    month: str
    currency: str
    starting_mrr: int
    ending_mrr: int
    contraction: int
    churn: int
    nrr: str | None = Field(description="ending / starting MRR, six decimals")
    grr: str | None = Field(description="(starting - contraction - churn) / starting")


class Window(BaseModel):
    from_: str = Field(alias="from")
    to: str


class Cohort(BaseModel):
    currency: str
    cohort: str = Field(description="the month of the cohort's first new movement")
    months: list[str]
    mrr: list[int] = Field(description="the cohort's MRR at the end of each month")


class RetentionOut(BaseModel):
    month: str
    window: Window
    retention: list[RetentionRow]
    cohorts: list[Cohort]


def answers(model: type[BaseModel]) -> dict[int | str, dict[str, object]]:
    """The documented answers of a revenue route: `model` as JSON, or CSV."""
    return {
        200: {"model": model, "content": {"text/csv": {"schema": {"type": "string"}}}},
        401: {"description": "no or unknown API key"},
        403: {"description": "the key lacks the read scope"},
    }
