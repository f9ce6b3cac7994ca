"""What a plan bills: its metered prices, each with the meter's Stripe meter and formula.

`billed_meters` reads a plan's `metered_prices` against the catalog and each meter's Stripe
meter (`stripe_objects`, kind 'meter', read by `reporter/postgres/scope.py`). A meter without
a Stripe meter is left out (the catalog has not been synced yet); nothing is reported for
it. Who is billed by which plan when is `contexts.py`'s business; `TenantScope` gathers every
meter a customer's contexts billed, for `rollups.period_maxima`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from meterline.catalog.model import Aggregation, Catalog, MeteredPrice, Plan
from meterline.stripe import FORMULA


@dataclass(frozen=True, slots=True)
class BilledMeter:
    """A meter as Stripe knows it, with the price of one unit past every tier in minor units
    (`unit_amount_decimal`, shown on alerts) and the whole metered `price` that prices a
    period's invoice line (`None` for contexts recorded before prices were frozen whole:
    they bill per unit at `unit_amount_decimal`)."""

    key: str
    aggregation: Aggregation
    event_name: str
    stripe_meter_id: str
    unit_amount_decimal: Decimal
    currency: str
    price: MeteredPrice | None = field(default=None, compare=False)

    @property
    def formula(self) -> str:
        return FORMULA[self.aggregation]


@dataclass(frozen=True, slots=True)
class BilledCustomer:
    customer: str
    stripe_customer_id: str
    plan: str
    meters: dict[str, BilledMeter]
    period_start: datetime | None = None
    period_end: datetime | None = None


@dataclass
class TenantScope:
    tenant_id: int
    customers: dict[str, BilledCustomer] = field(default_factory=dict)

    def meter(self, customer: str, meter: str) -> BilledMeter | None:
        found = self.customers.get(customer)
        return None if found is None else found.meters.get(meter)

    def pairs(self) -> Iterator[tuple[BilledCustomer, BilledMeter]]:
        for c in self.customers.values():
            for m in c.meters.values():
                yield c, m


def billed_meters(
    catalog: Catalog, meters: dict[str, tuple[str, str]], plan: Plan
) -> dict[str, BilledMeter]:
    """The meters `plan` bills that have a Stripe meter, with their prices."""
    billed: dict[str, BilledMeter] = {}
    for key, price in plan.metered_prices.items():
        meter = catalog.meter(key)
        if meter is None or key not in meters:
            continue
        stripe_meter, event_name = meters[key]
        billed[key] = BilledMeter(
            key,
            meter.aggregation,
            event_name,
            stripe_meter,
            price.unit_amount_decimal,
            price.currency,
            price,
        )
    return billed


def period_price(meter: BilledMeter) -> MeteredPrice:
    """The price that bills `meter`'s period: the frozen one, else per unit."""
    if meter.price is not None:
        return meter.price
    return MeteredPrice(meter.currency, per_unit=meter.unit_amount_decimal)


def same_prices(a: dict[str, BilledMeter], b: dict[str, BilledMeter]) -> bool:
    """The same meters at the same prices; a price not recorded (older contexts) matches any
    price with its marginal amount, so an upgrade does not look like a price change."""
    return a == b and all(
        a[k].price is None or b[k].price is None or a[k].price == b[k].price for k in a
    )
