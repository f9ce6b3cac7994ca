"""Subscription states as Stripe describes them: the input of every revenue metric.

One `SubscriptionState` is one snapshot of one subscription (a webhook's `data.object`, or a
state rebuilt from Stripe) at the instant Stripe gave it. The metrics are computed by
`reporter.revenue`; this module is the shared vocabulary the webhook listener writes and the
reporter reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Item:
    """One licensed (not metered) price on a subscription."""

    unit_amount: int  # minor units per interval
    quantity: int
    interval: str  # day, week, month, year
    interval_count: int = 1


@dataclass(frozen=True, slots=True)
class Discount:
    duration: str  # once, repeating, forever
    percent_off: Decimal | None = None
    amount_off: int | None = None  # minor units per interval, on the whole subscription


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """A subscription as Stripe described it at `at` (each webhook or sync gives one)."""

    at: datetime
    customer: str
    subscription: str
    status: str
    currency: str
    items: tuple[Item, ...]
    discount: Discount | None = None


@dataclass(frozen=True, slots=True)
class MeteredInvoice:
    """The metered part of one closed (finalized) Stripe invoice: the sum of its metered
    lines, less their discounts, in minor units of `currency`. `at` is when it closed
    (finalized); `status` is Stripe's (`open`, `paid`, `uncollectible`, `void`). A voided
    invoice bills nothing (`amount` counts only while not void: `billed`)."""

    at: datetime
    customer: str
    invoice: str
    currency: str
    amount: int
    status: str

    @property
    def billed(self) -> int:
        return 0 if self.status == "void" else self.amount
