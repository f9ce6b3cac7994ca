"""Revenue reports for the API and the /finance Revenue tab, from a tenant's revenue events.

Each function takes the tenant's subscription states (`RevenueEventStore.states`) and returns
plain rows: amounts in minor units of their currency (integers), ratios as decimal strings
with six places (None when there is nothing to divide by). The figures are those of
`reporter.revenue`; this module only chooses the months and the shape. Months are validated
here (`month_arg`, `month_range`) so the API and the page refuse the same input the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from meterline.errors import FieldError, ValidationFailed
from reporter.revenue import (
    Kind,
    MeteredInvoice,
    SubscriptionState,
    cohorts,
    metered_by_month,
    month_key,
    monthly,
    movements,
    retention,
)

MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
MAX_MONTHS = 120
RATIO = Decimal("0.000001")
MRR_COLUMNS = (
    "month", "currency", "start_mrr", "new", "expansion", "contraction", "churn",
    "reactivation", "end_mrr", "arr", "metered",
)  # fmt: skip
MOVEMENT_COLUMNS = ("at", "customer", "currency", "kind", "amount", "mrr_before", "mrr_after")


def month_arg(field: str, value: str | None, default: str) -> str:
    """`value` (YYYY-MM) or `default`; ValidationFailed naming `field` otherwise."""
    if value is None or value == "":
        return default
    if not MONTH.fullmatch(value) or value < "1970-01":
        raise ValidationFailed([FieldError(field, "must be a month as YYYY-MM")])
    return value


def month_range(start: str, end: str) -> list[str]:
    """The months from `start` to `end`, both included; refuses a reversed or too long span."""
    if start > end:
        raise ValidationFailed([FieldError("from", "must not be after `to`")])
    months = [start]
    while months[-1] < end:
        months.append(shift(months[-1], 1))
        if len(months) > MAX_MONTHS:
            raise ValidationFailed([FieldError("to", f"at most {MAX_MONTHS} months after `from`")])
    return months


def shift(month: str, by: int) -> str:
    year, number = int(month[:4]), int(month[5:7]) - 1 + by
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def mrr_rows(
    states: Sequence[SubscriptionState],
    months: Sequence[str],
    invoices: Sequence[MeteredInvoice] = (),
) -> list[dict[str, Any]]:
    """Per month and currency: start MRR, each movement's sum, end MRR and ARR, and beside
    them (never in them) the metered revenue of the invoices closed that month. A currency
    billed only metered usage gets rows of 0 MRR."""
    metered = metered_by_month(invoices)
    rows = [asdict(r) | {"arr": r.arr} for r in monthly(movements(states), months)]
    recurring = {r["currency"] for r in rows}
    for currency in sorted({c for m, c in metered if m in months} - recurring):
        rows += [_no_mrr(month, currency) for month in months]
    rows.sort(key=lambda r: (r["currency"], r["month"]))
    return [r | {"metered": metered.get((r["month"], r["currency"]), 0)} for r in rows]


def _no_mrr(month: str, currency: str) -> dict[str, Any]:
    zero = dict.fromkeys(MRR_COLUMNS[2:-1], 0)
    return {"month": month, "currency": currency, **zero}


def movement_rows(states: Sequence[SubscriptionState], month: str) -> list[dict[str, Any]]:
    """The month's movements in time order, each with the customer behind it."""
    return [
        asdict(m) | {"at": m.at.isoformat().replace("+00:00", "Z"), "kind": str(m.kind)}
        for m in movements(states)
        if month_key(m.at) == month
    ]


def movement_totals(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per currency and kind: the sum and the customers (sorted, each once)."""
    found: dict[tuple[str, str], tuple[int, set[str]]] = {}
    for r in rows:
        amount, customers = found.get((r["currency"], r["kind"]), (0, set()))
        found[r["currency"], r["kind"]] = (amount + r["amount"], customers | {r["customer"]})
    return [
        {"currency": c, "kind": k, "amount": a, "customers": sorted(who)}
        for (c, k), (a, who) in sorted(found.items(), key=lambda kv: (kv[0][0], _order(kv[0][1])))
    ]


def retention_report(states: Sequence[SubscriptionState], month: str) -> dict[str, Any]:
    """Trailing-12-month NRR and GRR ending with `month`, and the cohorts up to it."""
    found = movements(states)
    first = min((month_key(m.at) for m in found), default=month)
    months = month_range(min(first, month), month) if first <= month else [month]
    return {
        "month": month,
        "window": {"from": shift(month, -12), "to": month},
        "retention": [
            asdict(r) | {"nrr": _ratio(r.nrr), "grr": _ratio(r.grr)}
            for r in retention(found, month)
        ],
        "cohorts": [
            {"currency": c, "cohort": m, "months": months[months.index(m) :], "mrr": mrr}
            for (c, m), mrr in cohorts(found, months).items()
            if m <= month
        ],
    }


def nrr_series(states: Sequence[SubscriptionState], months: Sequence[str]) -> dict[str, list[Any]]:
    """Per currency, the trailing NRR (a Decimal or None) ending with each of `months`."""
    found = movements(states)
    series: dict[str, list[Any]] = {}
    for i, month in enumerate(months):
        for r in retention(found, month):
            series.setdefault(r.currency, [None] * len(months))[i] = r.nrr
    return series


def _ratio(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(RATIO))


def _order(kind: str) -> int:
    return list(Kind).index(Kind(kind))
