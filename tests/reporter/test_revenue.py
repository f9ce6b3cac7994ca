"""Revenue metrics over 14 months of subscriptions whose MRR, movements, ARR, NRR and GRR were
worked out by hand: the arithmetic is written out next to each expected figure (minor units,
USD cents). Prices: Basic 900/month, Pro 4,900/month, Pro yearly 49,000/year, a seat 1,000/month,
a weekly plan 300/week. Metered usage billed on closed invoices is shown apart: G pays 5 per
unit of a metered price and nothing recurring."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from reporter.revenue import (
    Discount,
    Item,
    Kind,
    MeteredInvoice,
    SubscriptionState,
    cohorts,
    metered_by_month,
    monthly,
    movements,
    retention,
    subscription_mrr,
)

BASIC = Item(900, 1, "month")
PRO = Item(4900, 1, "month")
PRO_YEARLY = Item(49000, 1, "year")
WEEKLY = Item(300, 1, "week")
FOREVER_20 = Discount("forever", Decimal(20))
MONTHS = [f"2025-{m:02d}" for m in (11, 12)] + [f"2026-{m:02d}" for m in range(1, 13)]


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def invoice(day: str, customer: str, number: str, amount: int, status: str) -> MeteredInvoice:
    return MeteredInvoice(at(day), customer, number, "usd", amount, status)


def state(
    day: str, customer: str, sub: str, status: str, *items: Item, discount: Discount | None = None
) -> SubscriptionState:
    return SubscriptionState(at(day), customer, sub, status, "usd", items, discount)


HISTORY = [
    # A: Basic, then Pro, then canceled.
    state("2025-11-03", "A", "a1", "active", BASIC),  # new 900
    state("2026-02-10", "A", "a1", "active", PRO),  # expansion 4900 - 900 = 4000
    state("2026-09-01", "A", "a1", "canceled", PRO),  # churn 4900
    # B: a trial (no MRR), paid Pro, down to Basic, up to 2 x Pro.
    state("2025-11-20", "B", "b1", "trialing", PRO),
    state("2025-12-04", "B", "b1", "active", PRO),  # new 4900
    state("2026-05-15", "B", "b1", "active", BASIC),  # contraction 4900 - 900 = 4000
    state("2026-10-20", "B", "b1", "active", Item(4900, 2, "month")),  # expansion 9800 - 900
    # C: yearly Pro, 20% off forever; past due (still counts), unpaid (churn), back on monthly
    # Pro with a one-time coupon (not a lower MRR).
    state("2026-01-08", "C", "c1", "active", PRO_YEARLY, discount=FOREVER_20),
    state("2026-06-01", "C", "c1", "past_due", PRO_YEARLY, discount=FOREVER_20),
    state("2026-06-20", "C", "c1", "unpaid", PRO_YEARLY, discount=FOREVER_20),
    state("2026-10-05", "C", "c2", "active", PRO, discount=Discount("once", Decimal(50))),
    # D: 5 seats, then 8, a second subscription, the seats canceled.
    state("2026-03-01", "D", "d1", "active", Item(1000, 5, "month")),  # new 5000
    state("2026-07-01", "D", "d1", "active", Item(1000, 8, "month")),  # expansion 3000
    state("2026-11-12", "D", "d2", "active", BASIC),  # expansion 900
    state("2026-12-02", "D", "d1", "canceled", Item(1000, 8, "month")),  # contraction 8000
    # E: weekly, canceled.
    state("2025-12-15", "E", "e1", "active", WEEKLY),  # new 300 * 52 / 12 = 1300
    state("2026-12-01", "E", "e1", "canceled", WEEKLY),  # churn 1300
    # F: incomplete first, then Basic with 200 off forever.
    state("2026-04-09", "F", "f1", "incomplete", BASIC),
    state("2026-04-10", "F", "f1", "active", BASIC, discount=Discount("forever", amount_off=200)),
]


# The metered part of each closed invoice (finalized that day), as the webhooks keep it.
INVOICES = [
    # B's trial ends: its invoice bills Pro for the coming month, a licensed line: 0 metered.
    invoice("2025-12-04", "B", "in_b1", 0, "paid"),
    # G: a metered-only subscription from 2025-11-05, 5 per unit, billed monthly in arrears.
    invoice("2025-12-05", "G", "in_g1", 1234 * 5, "paid"),  # 1,234 units: 6,170
    invoice("2026-01-05", "G", "in_g2", 2000 * 5, "paid"),  # 2,000 units: 10,000
    invoice("2026-02-05", "G", "in_g3", 0, "paid"),  # no usage
]
METERED = {"2025-12": 6170, "2026-01": 10000}  # every other month: 0
# Not in the emulator's history (it cannot void or leave an invoice unpaid after a close): an
# invoice voided after it closed bills nothing; one left open (unpaid) still counts.
MORE_INVOICES = [
    invoice("2026-03-05", "G", "in_g4", 700, "void"),  # 0
    invoice("2026-03-31", "G", "in_g5", 300, "open"),  # 300
    invoice("2026-04-01", "G", "in_g6", 55, "uncollectible"),  # 55
]


def test_subscription_mrr_normalises_discounts_and_statuses() -> None:
    # 49,000 / 12 = 4,083.33...; 20% off: 3,266.66... -> 3,267 (half up, once, after the discount)
    assert subscription_mrr(HISTORY[7]) == 3267
    assert subscription_mrr(HISTORY[8]) == 3267  # past_due still counts
    assert subscription_mrr(HISTORY[9]) == 0  # unpaid
    assert subscription_mrr(HISTORY[10]) == 4900  # a `once` coupon does not lower MRR
    assert subscription_mrr(HISTORY[3]) == 0  # trialing
    assert subscription_mrr(HISTORY[15]) == 1300  # 300 * 52 / 12
    assert subscription_mrr(HISTORY[18]) == 700  # 900 - 200


def test_movements_by_month_and_arr() -> None:
    rows = {m.month: m for m in monthly(movements(HISTORY), MONTHS)}
    expected = {
        # month: (start, new, expansion, contraction, churn, reactivation, end)
        "2025-11": (0, 900, 0, 0, 0, 0, 900),
        "2025-12": (900, 4900 + 1300, 0, 0, 0, 0, 7100),
        "2026-01": (7100, 3267, 0, 0, 0, 0, 10367),
        "2026-02": (10367, 0, 4000, 0, 0, 0, 14367),
        "2026-03": (14367, 5000, 0, 0, 0, 0, 19367),
        "2026-04": (19367, 700, 0, 0, 0, 0, 20067),
        "2026-05": (20067, 0, 0, 4000, 0, 0, 16067),
        "2026-06": (16067, 0, 0, 0, 3267, 0, 12800),
        "2026-07": (12800, 0, 3000, 0, 0, 0, 15800),
        "2026-08": (15800, 0, 0, 0, 0, 0, 15800),
        "2026-09": (15800, 0, 0, 0, 4900, 0, 10900),
        # C back (4,900) and B up from 900 to 9,800 (8,900): 10,900 + 4,900 + 8,900
        "2026-10": (10900, 0, 8900, 0, 0, 4900, 24700),
        "2026-11": (24700, 0, 900, 0, 0, 0, 25600),
        # D's seats (8,000) leave, its Basic stays; E churns (1,300): 25,600 - 9,300
        "2026-12": (25600, 0, 0, 8000, 1300, 0, 16300),
    }
    for month, figures in expected.items():
        row = rows[month]
        got = (row.start_mrr, row.new, row.expansion, row.contraction, row.churn)
        assert (*got, row.reactivation, row.end_mrr) == figures, month
    # The customers at the end: B 9,800 + C 4,900 + D 900 + F 700 = 16,300.
    assert rows["2026-12"].arr == 16300 * 12 == 195600


def test_a_movement_names_its_customer() -> None:
    found = [m for m in movements(HISTORY) if m.at.strftime("%Y-%m") == "2026-10"]
    assert [(m.customer, m.kind, m.amount) for m in found] == [
        ("C", Kind.REACTIVATION, 4900),
        ("B", Kind.EXPANSION, 8900),
    ]


def test_trailing_twelve_month_retention() -> None:
    (usd,) = retention(movements(HISTORY), "2026-12")
    # Paying at the end of 2025-12: A 900, B 4,900, E 1,300 -> S = 7,100.
    # At the end of 2026-12: A 0, B 9,800, E 0 -> E = 9,800.
    assert (usd.starting_mrr, usd.ending_mrr) == (7100, 9800)
    # Churn: A's 900 and E's 1,300 as they paid at the start (A's expansion in between is not
    # lost twice); B ends above its start: no contraction.
    assert (usd.churn, usd.contraction) == (2200, 0)
    assert usd.nrr == Decimal(9800) / Decimal(7100)  # 138.03%
    assert usd.grr == Decimal(4900) / Decimal(7100)  # 69.01%
    assert round(usd.nrr * 100, 2) == Decimal("138.03")
    assert round(usd.grr * 100, 2) == Decimal("69.01")


def test_cohorts_follow_their_customers() -> None:
    found = cohorts(movements(HISTORY), MONTHS)
    assert sorted(found) == [
        ("usd", "2025-11"),
        ("usd", "2025-12"),
        ("usd", "2026-01"),
        ("usd", "2026-03"),
        ("usd", "2026-04"),
    ]
    # B and E: 6,200; B down to 900 in May (2,200); B up to 9,800 in October (11,100); E gone in
    # December (9,800).
    assert found[("usd", "2025-12")] == [6200] * 5 + [2200] * 5 + [11100] * 2 + [9800]
    # C: 3,267 until unpaid in June, back at 4,900 in October.
    assert found[("usd", "2026-01")] == [3267] * 5 + [0] * 4 + [4900] * 3


@pytest.mark.parametrize("currency", ["usd", "eur"])
def test_currencies_are_kept_apart(currency: str) -> None:
    mixed = [
        SubscriptionState(at("2026-01-01"), "X", "x1", "active", "usd", (BASIC,)),
        SubscriptionState(at("2026-01-02"), "X", "x2", "active", "eur", (PRO,)),
    ]
    (row,) = [r for r in monthly(movements(mixed), ["2026-01"]) if r.currency == currency]
    assert row.new == {"usd": 900, "eur": 4900}[currency]


def test_metered_revenue_per_month_apart_from_mrr() -> None:
    found = metered_by_month(INVOICES + MORE_INVOICES)
    assert {k: v for k, v in found.items() if v} == {
        ("2025-12", "usd"): 6170,  # G's 1,234 units x 5; B's licensed line adds 0
        ("2026-01", "usd"): 10000,  # 2,000 units x 5
        ("2026-03", "usd"): 300,  # 700 voided (0) + 300 open
        ("2026-04", "usd"): 55,  # uncollectible: billed all the same
    }
    assert found[("2026-02", "usd")] == 0  # G's invoice without usage
    # Metered revenue never enters MRR: the movements, their months and ARR are those above.
    rows = {m.month: m for m in monthly(movements(HISTORY), MONTHS)}
    assert rows["2025-12"].end_mrr == 7100 and rows["2026-01"].end_mrr == 10367
    assert {m: found.get((m, "usd"), 0) for m in METERED} == METERED
