"""Sync a tenant's catalog to Stripe: meters, products and prices, idempotently.

Every Stripe object is found again by a stable name before anything is created, so running the
sync twice (or after a crash half-way) never makes duplicates:
- a meter by its `event_name`, `ml_<tenant id>_<meter key>`;
- a product by its explicit id, `ml_<tenant id>_<plan key>` (plans with a price only);
- a price by its `lookup_key`, `ml_<tenant id>_<plan key>_base` for the base price and
  `ml_<tenant id>_<plan key>_<meter key>` for a metered price. Prices are immutable in Stripe: a
  changed amount creates a new price that takes over the lookup key (`transfer_lookup_key`), and
  the old one is archived (subscriptions on it keep working and still map to the plan through
  its `metadata.meterline_plan`). A metered price is per unit, tiered (graduated or volume, the
  catalog's `included` units as a free first tier) or per unit with `transform_quantity` (a
  package); see `metered_price_params`. Tiers are read back with `expand[]=data.tiers`, as Stripe
  returns them only when expanded, so an unchanged tiered price is recognised and kept.

Aggregation -> meter formula: sum -> sum, count -> sum (counts are pushed as values),
max -> last, latest -> last. Meters dropped from the catalog are left alone (data is never
deleted). The Stripe ids are stored in `stripe_objects` (kind meter | product | price |
metered_price; key = meter key, plan key, or plan/meter). Credit packs: see `pack_sync`.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import stripe

from meterline.catalog import (
    Aggregation,
    Catalog,
    CatalogDiff,
    CatalogRepository,
    CreditPack,
    Meter,
    MeteredPrice,
    Plan,
    Tier,
)
from meterline.catalog.model import decimal_to_json
from meterline.stripe.pack_sync import PackSync

FORMULA = {
    Aggregation.SUM: "sum",
    Aggregation.COUNT: "sum",
    Aggregation.MAX: "last",
    Aggregation.LATEST: "last",
}


@dataclass(frozen=True, slots=True)
class StripeObject:
    kind: str
    key: str
    stripe_id: str
    event_name: str | None = None


class StripeObjectRepository(abc.ABC):
    """The Stripe id behind each catalog entry of a tenant."""

    @abc.abstractmethod
    def get(self, tenant_id: int, kind: str, key: str) -> StripeObject | None: ...

    @abc.abstractmethod
    def put(self, tenant_id: int, obj: StripeObject) -> None: ...

    @abc.abstractmethod
    def all(self, tenant_id: int) -> list[StripeObject]: ...

    @abc.abstractmethod
    def by_stripe_id(self, stripe_id: str) -> tuple[int, StripeObject] | None:
        """The (tenant id, object) whose Stripe id is `stripe_id`."""


class MemoryStripeObjectRepository(StripeObjectRepository):
    def __init__(self) -> None:
        self._rows: dict[tuple[int, str, str], StripeObject] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: int, kind: str, key: str) -> StripeObject | None:
        return self._rows.get((tenant_id, kind, key))

    def put(self, tenant_id: int, obj: StripeObject) -> None:
        with self._lock:
            self._rows[tenant_id, obj.kind, obj.key] = obj

    def all(self, tenant_id: int) -> list[StripeObject]:
        return [o for (t, _, _), o in sorted(self._rows.items()) if t == tenant_id]

    def by_stripe_id(self, stripe_id: str) -> tuple[int, StripeObject] | None:
        found = [(t, o) for (t, _, _), o in self._rows.items() if o.stripe_id == stripe_id]
        return found[0] if found else None


@dataclass
class SyncReport:
    """What a sync did: one line per object, `created`, `updated` or `unchanged`."""

    lines: list[str] = field(default_factory=list)

    def note(self, verb: str, what: str, stripe_id: str) -> None:
        self.lines.append(f"{verb:<9} {what} ({stripe_id})")

    @property
    def changed(self) -> bool:
        return any(not line.startswith("unchanged") for line in self.lines)


def meter_event_name(tenant_id: int, meter: str) -> str:
    return f"ml_{tenant_id}_{meter}"


def plan_product_id(tenant_id: int, plan: str) -> str:
    return f"ml_{tenant_id}_{plan}"


def price_lookup_key(tenant_id: int, plan: str, meter: str | None = None) -> str:
    return f"ml_{tenant_id}_{plan}_{meter or 'base'}"


class CatalogSync:
    """Makes Stripe match a tenant's catalog; safe to run any number of times."""

    def __init__(self, client: stripe.StripeClient, objects: StripeObjectRepository) -> None:
        self._client = client
        self._objects = objects

    def sync(self, tenant_id: int, catalog: Catalog) -> SyncReport:
        report = SyncReport()
        meters = {m.key: self._meter(tenant_id, m, report) for m in catalog.meters}
        for plan in catalog.plans:
            if plan.price is None and not plan.metered_prices:
                continue
            product = self._product(tenant_id, plan, report)
            if plan.price is not None:
                self._base_price(tenant_id, plan, product, report)
            for meter_key in plan.metered_prices:
                self._metered_price(tenant_id, plan, meter_key, product, meters[meter_key], report)
        for pack in catalog.credit_packs:
            self._pack(tenant_id, pack, report)
        return report

    def _pack(self, tenant_id: int, pack: CreditPack, report: SyncReport) -> None:
        packs = PackSync(self._client)
        product, verb = packs.product(tenant_id, pack)
        report.note(verb, f"product pack {pack.key}", product)
        price, verb = packs.price(tenant_id, pack, product)
        report.note(verb, f"price pack {pack.key}", price)
        self._objects.put(tenant_id, StripeObject("pack_product", pack.key, product))
        self._objects.put(tenant_id, StripeObject("pack_price", pack.key, price))

    def _meter(self, tenant_id: int, meter: Meter, report: SyncReport) -> str:
        name = meter_event_name(tenant_id, meter.key)
        found = self._find_meter(name)
        if found is None:
            params: dict[str, Any] = {
                "display_name": meter.display_name,
                "event_name": name,
                "default_aggregation": {"formula": FORMULA[meter.aggregation]},
                "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
                "value_settings": {"event_payload_key": "value"},
            }
            found = self._client.v1.billing.meters.create(params)  # type: ignore[arg-type]
            report.note("created", f"meter {meter.key}", found.id)
        elif found.status != "active":
            found = self._client.v1.billing.meters.reactivate(found.id)
            report.note("updated", f"meter {meter.key} (reactivated)", found.id)
        else:
            report.note("unchanged", f"meter {meter.key}", found.id)
        self._objects.put(tenant_id, StripeObject("meter", meter.key, found.id, name))
        return str(found.id)

    def _find_meter(self, event_name: str) -> stripe.billing.Meter | None:
        for m in self._client.v1.billing.meters.list({"limit": 100}).auto_paging_iter():
            if m.event_name == event_name:
                return m
        return None

    def _product(self, tenant_id: int, plan: Plan, report: SyncReport) -> str:
        product_id = plan_product_id(tenant_id, plan.key)
        metadata = {"meterline_tenant": str(tenant_id), "meterline_plan": plan.key}
        try:
            product = self._client.v1.products.retrieve(product_id)
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing":
                raise
            params = {"id": product_id, "name": plan.display_name, "metadata": metadata}
            product = self._client.v1.products.create(params)  # type: ignore[arg-type]
            report.note("created", f"product {plan.key}", product.id)
        else:
            if product.name != plan.display_name or not product.active:
                update = {"name": plan.display_name, "active": True}
                product = self._client.v1.products.update(product_id, update)  # type: ignore[arg-type]
                report.note("updated", f"product {plan.key}", product.id)
            else:
                report.note("unchanged", f"product {plan.key}", product.id)
        self._objects.put(tenant_id, StripeObject("product", plan.key, product_id))
        return product_id

    def _base_price(self, tenant_id: int, plan: Plan, product: str, report: SyncReport) -> None:
        assert plan.price is not None
        wanted: dict[str, Any] = {
            "product": product,
            "currency": plan.price.currency,
            "unit_amount": plan.price.amount,
            "recurring": {"interval": plan.price.interval.value, "usage_type": "licensed"},
        }
        key = price_lookup_key(tenant_id, plan.key)
        price_id = self._price(key, wanted, plan, f"price {plan.key}", report)
        self._objects.put(tenant_id, StripeObject("price", plan.key, price_id))

    def _metered_price(
        self, tenant_id: int, plan: Plan, meter: str, product: str, meter_id: str, r: SyncReport
    ) -> None:
        metered = plan.metered_prices[meter]
        interval = plan.price.interval.value if plan.price else "month"
        wanted: dict[str, Any] = {
            "product": product,
            "currency": metered.currency,
            **metered_price_params(metered),
            "recurring": {"interval": interval, "usage_type": "metered", "meter": meter_id},
        }
        key = price_lookup_key(tenant_id, plan.key, meter)
        price_id = self._price(key, wanted, plan, f"metered price {plan.key}/{meter}", r)
        self._objects.put(tenant_id, StripeObject("metered_price", f"{plan.key}/{meter}", price_id))

    def _price(
        self, key: str, wanted: dict[str, Any], plan: Plan, what: str, report: SyncReport
    ) -> str:
        query = {"lookup_keys": [key], "limit": 1, "expand": ["data.tiers"]}
        listed = self._client.v1.prices.list(query).data  # type: ignore[arg-type]
        current = listed[0] if listed else None
        if current is not None and _same_price(current, wanted):
            report.note("unchanged", what, current.id)
            return str(current.id)
        params = {
            **wanted,
            "lookup_key": key,
            "transfer_lookup_key": True,
            "metadata": {"meterline_plan": plan.key},
        }
        created = self._client.v1.prices.create(params)  # type: ignore[arg-type]
        if current is not None:
            self._client.v1.prices.update(current.id, {"active": False})
        report.note("created" if current is None else "updated", what, created.id)
        return str(created.id)


def metered_price_params(price: MeteredPrice) -> dict[str, Any]:
    """Stripe's create parameters for the amounts of a catalog metered price.

    Included units become a free first graduated tier; a package is a per-unit price with
    `transform_quantity`; decimal amounts go as exact strings.
    """
    mode = price.stripe_tiers_mode
    if mode is not None:
        tiers = [_tier_params(tier) for tier in price.stripe_tiers()]
        return {"billing_scheme": "tiered", "tiers_mode": mode.value, "tiers": tiers}
    if price.package is not None:
        package = price.package
        return {
            "billing_scheme": "per_unit",
            "unit_amount_decimal": decimal_to_json(package.amount_decimal),
            "transform_quantity": {"divide_by": package.divide_by, "round": package.round.value},
        }
    assert price.per_unit is not None
    return {"billing_scheme": "per_unit", "unit_amount_decimal": decimal_to_json(price.per_unit)}


def _tier_params(tier: Tier) -> dict[str, Any]:
    params: dict[str, Any] = {"up_to": "inf" if tier.up_to is None else tier.up_to}
    if tier.unit_amount_decimal is not None:
        params["unit_amount_decimal"] = decimal_to_json(tier.unit_amount_decimal)
    if tier.flat_amount_decimal is not None:
        params["flat_amount_decimal"] = decimal_to_json(tier.flat_amount_decimal)
    return params


def _same_price(price: stripe.Price, wanted: dict[str, Any]) -> bool:
    recurring = price.recurring
    if recurring is None or not price.active:
        return False
    want = wanted["recurring"]
    return (
        _amounts_of(price) == _wanted_amounts(wanted)
        and price.currency == wanted["currency"]
        and price.product == wanted["product"]
        and recurring.interval == want["interval"]
        and recurring.usage_type == want["usage_type"]
        and (recurring.meter or None) == want.get("meter")
    )


_Amounts = tuple[object, ...]


def _amounts_of(price: stripe.Price) -> _Amounts:
    """What a Stripe price charges, in a form comparable with `_wanted_amounts`."""
    if price.billing_scheme == "tiered":
        tiers = tuple(
            (t.up_to, _decimal(t.unit_amount_decimal), _decimal(t.flat_amount_decimal))
            for t in getattr(price, "tiers", None) or ()
        )
        return ("tiered", price.tiers_mode, tiers)
    transform = getattr(price, "transform_quantity", None)
    package = (transform.divide_by, transform.round) if transform is not None else None
    return ("per_unit", _decimal(price.unit_amount_decimal), package)


def _wanted_amounts(wanted: dict[str, Any]) -> _Amounts:
    if wanted.get("billing_scheme") == "tiered":
        tiers = tuple(
            (
                None if t["up_to"] == "inf" else t["up_to"],
                _decimal(t.get("unit_amount_decimal")),
                _decimal(t.get("flat_amount_decimal")),
            )
            for t in wanted["tiers"]
        )
        return ("tiered", wanted["tiers_mode"], tiers)
    transform = wanted.get("transform_quantity")
    package = (transform["divide_by"], transform["round"]) if transform else None
    amount = wanted.get("unit_amount_decimal", wanted.get("unit_amount"))
    return ("per_unit", _decimal(amount), package)


def _decimal(value: object) -> Decimal | None:
    """An amount as an exact `Decimal`; absent counts as 0 (it charges nothing); unreadable is
    `None`, which matches no wanted amount, so such a price is replaced."""
    if value is None:
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class ApplyResult:
    version: int
    diff: CatalogDiff
    stripe: SyncReport | None


def apply_and_sync(
    catalogs: CatalogRepository, sync: CatalogSync | None, tenant_id: int, catalog: Catalog
) -> ApplyResult:
    """Store `catalog` as the tenant's next version (if it changed), then sync it to Stripe.

    The sync runs even when nothing changed, so a sync that failed half-way is finished by the
    next apply. `sync` None skips Stripe (no Stripe configured).
    """
    version, diff = catalogs.apply(tenant_id, catalog)
    report = sync.sync(tenant_id, catalog) if sync is not None else None
    return ApplyResult(version, diff, report)
