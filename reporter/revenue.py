"""Recurring revenue from subscription history: MRR, its monthly movements, ARR, retention.

Definitions (../shared/NOTIFY-REVENUE.md, section b) and the choices taken where it leaves room:

- A subscription's MRR is its recurring items' price * quantity normalised to a month (a year
  / 12, a week * 52 / 12, a day * 365 / 12, divided by the interval count), less a `forever`
  discount (`once` and `repeating` coupons do not lower MRR), in minor units rounded half up
  to a whole unit. Only `active` and `past_due` subscriptions count: trialing, canceled,
  unpaid, paused and incomplete ones are 0. Metered prices are not recurring revenue.
- A customer's MRR is the sum over its subscriptions, per currency (no conversion).
- Each change of a customer's MRR is one movement: from 0 to more is `new` the first time and
  `reactivation` after; from more to 0 is `churn`; up is `expansion`, down is `contraction`.
  A month's movements sum to its end MRR minus its start MRR. ARR = MRR * 12.
- Retention over the 12 months ending with month M: the customers paying at the start of the
  window (each one's MRR `S_c`, in all `S`) and their MRR at M's end (`E_c`, `E`); NRR = E / S;
  GRR = (S - contraction - churn) / S, where churn is the `S_c` of those at 0 at the end and
  contraction the `S_c - E_c` of those paying less: measured per customer between the two
  instants, so a customer never loses more than it paid at the start and a dip undone within
  the window is no loss (GRR = Σ min(S_c, E_c) / S, at most 100%).
- A cohort is the customers whose first `new` movement falls in one month; its retention in a
  later month is their MRR at that month's end / the MRR they started with.

- Metered usage is shown apart, never inside MRR or its movements: each month's metered
  revenue is the sum, per currency, of the metered lines (less their discounts, before tax)
  of the invoices that closed (were finalized) in that month, voided ones excluded; paid,
  open and uncollectible ones count (billed, whatever its collection). An invoice closed on
  2026-12-05 billing usage of Nov 5 - Dec 5 counts in December: the month it was billed.

Changes at one instant are one movement. The states are the revenue events of
`meterline.revenue` (table `revenue_events`): each `customer.subscription.*` webhook's
snapshot, kept once per event id by the entitlements API's webhook at the event's `created`
time; `meterline revenue rebuild --tenant NAME` replaces them with what Stripe still lists
(meterline/revenue/README.md). Tested on 14 months worked out by hand
(tests/reporter/test_revenue.py). Not done: currency conversion.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

# The states come from the kernel (the webhook listener writes them); re-exported here.
from meterline.revenue.model import Discount as Discount
from meterline.revenue.model import Item as Item
from meterline.revenue.model import MeteredInvoice as MeteredInvoice
from meterline.revenue.model import SubscriptionState as SubscriptionState

COUNTED = frozenset({"active", "past_due"})
_MONTHS_PER = {
    "month": Decimal(1),
    "year": Decimal(12),
    "week": Decimal(12) / Decimal(52),
    "day": Decimal(12) / Decimal(365),
}


class Kind(enum.StrEnum):
    NEW = "new"
    EXPANSION = "expansion"
    CONTRACTION = "contraction"
    CHURN = "churn"
    REACTIVATION = "reactivation"


@dataclass(frozen=True, slots=True)
class Movement:
    at: datetime
    customer: str
    currency: str
    kind: Kind
    amount: int  # minor units, always positive
    mrr_before: int
    mrr_after: int


@dataclass(frozen=True, slots=True)
class Month:
    """One calendar month (UTC) of one currency."""

    month: str  # YYYY-MM
    currency: str
    start_mrr: int
    new: int
    expansion: int
    contraction: int
    churn: int
    reactivation: int
    end_mrr: int

    @property
    def arr(self) -> int:
        return self.end_mrr * 12


@dataclass(frozen=True, slots=True)
class Retention:
    month: str
    currency: str
    starting_mrr: int
    ending_mrr: int
    contraction: int
    churn: int

    @property
    def nrr(self) -> Decimal | None:
        return None if not self.starting_mrr else Decimal(self.ending_mrr) / self.starting_mrr

    @property
    def grr(self) -> Decimal | None:
        if not self.starting_mrr:
            return None
        return Decimal(self.starting_mrr - self.contraction - self.churn) / self.starting_mrr


def subscription_mrr(state: SubscriptionState) -> int:
    """The subscription's monthly recurring revenue in minor units (0 unless it counts)."""
    if state.status not in COUNTED:
        return 0
    total = sum((_monthly(item) for item in state.items), Decimal(0))
    discount = state.discount
    if discount is not None and discount.duration == "forever":
        total = _discounted(total, discount, state.items)
    return int(max(total, Decimal(0)).quantize(Decimal(1), ROUND_HALF_UP))


def _monthly(item: Item) -> Decimal:
    months = _MONTHS_PER[item.interval] * item.interval_count
    return Decimal(item.unit_amount) * item.quantity / months


def _discounted(total: Decimal, discount: Discount, items: Sequence[Item]) -> Decimal:
    if discount.percent_off is not None:
        return total * (100 - discount.percent_off) / 100
    if discount.amount_off is not None and items:
        first = items[0]
        return total - Decimal(discount.amount_off) / (
            _MONTHS_PER[first.interval] * first.interval_count
        )
    return total


def movements(states: Iterable[SubscriptionState]) -> list[Movement]:
    """Every change of a customer's MRR, in time order. States of one subscription replace
    each other; states at the same instant are applied together (one movement)."""
    current: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    paid_before: set[tuple[str, str]] = set()
    found: list[Movement] = []
    for at, batch in _by_instant(states):
        before = {key: sum(subs.values()) for key, subs in current.items()}
        for state in batch:
            current[(state.customer, state.currency)][state.subscription] = subscription_mrr(state)
        for key in sorted({(s.customer, s.currency) for s in batch}):
            old, new = before.get(key, 0), sum(current[key].values())
            kind = _kind(old, new, key in paid_before)
            if kind is not None:
                found.append(Movement(at, key[0], key[1], kind, abs(new - old), old, new))
            if new > 0:
                paid_before.add(key)
    return found


def _by_instant(
    states: Iterable[SubscriptionState],
) -> list[tuple[datetime, list[SubscriptionState]]]:
    grouped: dict[datetime, list[SubscriptionState]] = defaultdict(list)
    for state in states:
        grouped[state.at].append(state)
    return sorted(grouped.items())


def _kind(old: int, new: int, paid_before: bool) -> Kind | None:
    if old == new:
        return None
    if old == 0:
        return Kind.REACTIVATION if paid_before else Kind.NEW
    if new == 0:
        return Kind.CHURN
    return Kind.EXPANSION if new > old else Kind.CONTRACTION


def month_key(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def monthly(found: Sequence[Movement], months: Sequence[str]) -> list[Month]:
    """Each month of `months` (YYYY-MM, ascending) per currency: start MRR, the movements'
    sums, end MRR. Months before the first movement start at 0."""
    currencies = sorted({m.currency for m in found})
    out = []
    for currency in currencies:
        mine = [m for m in found if m.currency == currency]
        mrr = sum(_signed(m) for m in mine if month_key(m.at) < months[0])
        for month in months:
            sums = dict.fromkeys(Kind, 0)
            for m in mine:
                if month_key(m.at) == month:
                    sums[m.kind] += m.amount
            end = mrr + sums[Kind.NEW] + sums[Kind.EXPANSION] + sums[Kind.REACTIVATION]
            end -= sums[Kind.CONTRACTION] + sums[Kind.CHURN]
            out.append(
                Month(
                    month,
                    currency,
                    mrr,
                    new=sums[Kind.NEW],
                    expansion=sums[Kind.EXPANSION],
                    contraction=sums[Kind.CONTRACTION],
                    churn=sums[Kind.CHURN],
                    reactivation=sums[Kind.REACTIVATION],
                    end_mrr=end,
                )
            )
            mrr = end
    return out


def _signed(m: Movement) -> int:
    return m.mrr_after - m.mrr_before


def customer_mrr(found: Sequence[Movement], currency: str, until_month: str) -> dict[str, int]:
    """Each customer's MRR at the end of `until_month` (customers with 0 left out)."""
    mrr: dict[str, int] = {}
    for m in found:
        if m.currency == currency and month_key(m.at) <= until_month:
            mrr[m.customer] = m.mrr_after
    return {c: v for c, v in mrr.items() if v}


def retention(found: Sequence[Movement], month: str) -> list[Retention]:
    """Trailing-12-month NRR and GRR ending with `month`, per currency."""
    start = _shift(month, -12)
    out = []
    for currency in sorted({m.currency for m in found}):
        base = customer_mrr(found, currency, start)
        now = customer_mrr(found, currency, month)
        churn = sum(s for c, s in base.items() if c not in now)
        contraction = sum(s - now[c] for c, s in base.items() if 0 < now.get(c, 0) < s)
        ending = sum(now.get(c, 0) for c in base)
        out.append(Retention(month, currency, sum(base.values()), ending, contraction, churn))
    return out


def cohorts(found: Sequence[Movement], months: Sequence[str]) -> dict[tuple[str, str], list[int]]:
    """(currency, cohort month) → the cohort's MRR at the end of each month of `months` from
    its own month on, its first figure the MRR it started with (its `new` movements)."""
    started: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for m in found:
        if m.kind is Kind.NEW:
            started[(m.currency, month_key(m.at))][m.customer] = m.amount
    out = {}
    for (currency, cohort), members in sorted(started.items()):
        later = [customer_mrr(found, currency, month) for month in months if month > cohort]
        out[(currency, cohort)] = [sum(members.values())] + [
            sum(mrr.get(c, 0) for c in members) for mrr in later
        ]
    return out


def _shift(month: str, by: int) -> str:
    year, number = int(month[:4]), int(month[5:7]) - 1 + by
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def metered_by_month(invoices: Iterable[MeteredInvoice]) -> dict[tuple[str, str], int]:
    """(month, currency) -> the metered revenue of the invoices that closed that month (voided
    ones count 0). Kept apart from MRR: it is billed usage, not recurring revenue."""
    found: dict[tuple[str, str], int] = defaultdict(int)
    for invoice in invoices:
        found[(month_key(invoice.at), invoice.currency)] += invoice.billed
    return dict(found)
