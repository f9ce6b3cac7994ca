"""Prices as Stripe computes them: the example catalog through the sync and the emulator."""

from __future__ import annotations

import itertools
import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from meterline.catalog import MemoryCatalogRepository, load_catalog, parse_catalog
from meterline.stripe.catalog_sync import (
    CatalogSync,
    MemoryStripeObjectRepository,
    apply_and_sync,
    meter_event_name,
    price_lookup_key,
)
from stripe_emulator import EmulatorConfig, pricing
from tests.fixtures.stripe import StripeEmulatorHandle

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "catalog.example.yaml"
TENANT = 7


def _power_invoice(
    client: stripe.StripeClient, emulator: StripeEmulatorHandle, calls: str
) -> dict[str, object]:
    """Apply the example catalog, subscribe a customer to Power, send `calls`, close the period."""
    sync = CatalogSync(client, MemoryStripeObjectRepository())
    apply_and_sync(MemoryCatalogRepository(), sync, TENANT, load_catalog(EXAMPLE))
    prices = client.v1.prices.list(
        {"lookup_keys": [price_lookup_key(TENANT, "power", m) for m in (None, "api_calls")]}
    ).data
    customer = client.v1.customers.create({"email": "power@example.com"})
    items = [{"price": price.id} for price in prices]
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": items})
    client.v1.billing.meter_events.create(
        {
            "event_name": meter_event_name(TENANT, "api_calls"),
            "payload": {"stripe_customer_id": customer.id, "value": calls},
        }
    )
    return emulator.control.close_period(sub.id)


def test_usage_inside_the_included_calls_is_invoiced_the_base_price_alone(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    invoice = _power_invoice(stripe_client, stripe_emulator, "49")
    assert invoice["amount_due"] == 4900


def test_each_call_past_the_included_costs_five_hundredths_of_a_cent(
    stripe_client: stripe.StripeClient, stripe_emulator: StripeEmulatorHandle
) -> None:
    invoice = _power_invoice(stripe_client, stripe_emulator, "100049")
    assert invoice["amount_due"] == 4900 + 2  # 49 x 0.05 = 2.45 cents, rounded half-up per line
    invoice = _power_invoice(stripe_client, stripe_emulator, "100070")
    assert invoice["amount_due"] == 4900 + 4  # 70 x 0.05 = 3.5 cents -> 4


def _oracle_round(amount: Decimal) -> int:
    """Stripe rounds each invoice line to minor units, half-up (0.05 x 30 = 1.5 -> 2)."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _oracle_intervals(
    document: dict[str, Any],
) -> list[tuple[Decimal, Decimal | None, Decimal, Decimal]]:
    """The price as (lower, upper or None, per unit, flat) bands; included units a free band."""
    bands: list[tuple[Decimal, Decimal | None, Decimal, Decimal]] = []
    lower = Decimal(0)
    included = Decimal(document.get("included", 0))
    if included:
        bands.append((lower, included, Decimal(0), Decimal(0)))
        lower = included
    tiers = document.get("tiers") or [
        {"up_to": "inf", "unit_amount_decimal": document["unit_amount_decimal"]}
    ]
    for tier in tiers:
        upper = None if tier["up_to"] == "inf" else Decimal(tier["up_to"])
        unit = Decimal(tier.get("unit_amount_decimal", "0"))
        flat = Decimal(tier.get("flat_amount_decimal", "0"))
        bands.append((lower, upper, unit, flat))
        lower = upper if upper is not None else lower
    return bands


def oracle(document: dict[str, Any], usage: Decimal) -> int:
    """What Stripe charges for `usage` at a catalog metered price, from STRIPE-BILLING.md §a alone.

    Volume: the band holding the usage prices every unit, plus its flat amount. Graduated (and
    per unit with included units): every unit at its own band, plus the flat amount of each
    band with units in it. A package bills whole packages, rounded up or down. The first band's
    flat amount is charged at zero usage (the emulator's default for a point Stripe leaves
    unverified). Shares no code with the emulator or the catalog.
    """
    if "package" in document:
        package = document["package"]
        packages = usage / Decimal(package["divide_by"])
        whole = math.ceil(packages) if package["round"] == "up" else math.floor(packages)
        return _oracle_round(whole * Decimal(package["amount_decimal"]))
    bands = _oracle_intervals(document)
    if document.get("tiers_mode") == "volume":
        lower, upper, unit, flat = next(b for b in bands if b[1] is None or usage <= b[1])
        return _oracle_round(usage * unit + flat)
    total = Decimal(0)
    for index, (lower, upper, unit, flat) in enumerate(bands):
        top = usage if upper is None else min(usage, upper)
        units = top - lower if top > lower else Decimal(0)
        if units or index == 0:
            total += units * unit + flat
    return _oracle_round(total)


_amounts = st.decimals(min_value=Decimal("0.0001"), max_value=500, places=4).map(
    lambda d: format(d, "f")
)


@st.composite
def _tier_documents(draw: st.DrawFn, above: int) -> list[dict[str, Any]]:
    bounds = sorted(draw(st.lists(st.integers(above + 1, above + 5000), unique=True, max_size=3)))
    tiers: list[dict[str, Any]] = []
    for bound in [*bounds, "inf"]:
        tier: dict[str, Any] = {"up_to": bound}
        amounts = draw(st.sampled_from([("unit",), ("flat",), ("unit", "flat")]))
        for kind in amounts:
            tier[f"{kind}_amount_decimal"] = draw(_amounts)
        tiers.append(tier)
    return tiers


FORMS = ("per_unit", "graduated", "volume", "package")


@st.composite
def price_documents(draw: st.DrawFn, form: str) -> dict[str, Any]:
    """A catalog metered price of the given form, as a plain document."""
    included = draw(st.sampled_from([1, 100, 1000])) if draw(st.booleans()) else 0
    if form == "package":
        package = {
            "divide_by": draw(st.integers(1, 1000)),
            "round": draw(st.sampled_from(["up", "down"])),
            "amount_decimal": draw(_amounts),
        }
        return {"package": package, "currency": "usd"}
    if form == "volume":
        return {"tiers_mode": "volume", "tiers": draw(_tier_documents(0)), "currency": "usd"}
    price: dict[str, Any] = {"currency": "usd"}
    if form == "graduated":
        price |= {"tiers_mode": "graduated", "tiers": draw(_tier_documents(included))}
    else:
        price["unit_amount_decimal"] = draw(_amounts)
    return price | ({"included": included} if included else {})


def _edges(document: dict[str, Any]) -> list[int]:
    bounds = [t["up_to"] for t in document.get("tiers", []) if t["up_to"] != "inf"]
    bounds += [document.get("included", 0)]
    if "package" in document:
        bounds += [document["package"]["divide_by"] * k for k in (1, 2)]
    return [max(b + d, 0) for b in bounds for d in (-1, 0, 1)]


@st.composite
def usages(draw: st.DrawFn, document: dict[str, Any]) -> list[Decimal]:
    """No usage, usage at and beside boundaries of the price, anywhere, and fractional."""
    edges = _edges(document)
    near = draw(st.lists(st.sampled_from(edges), min_size=2, max_size=4, unique=True))
    anywhere = draw(st.integers(0, 20_000))
    fractional = draw(st.decimals(min_value=0, max_value=20_000, places=2))
    return [Decimal(0), *map(Decimal, near), Decimal(anywhere), fractional]


_tenants = itertools.count(1000)


@pytest.mark.parametrize("form", FORMS)
@seed(20261206)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_invoice_amounts_match_an_independent_oracle(
    stripe_client: stripe.StripeClient,
    stripe_emulator: StripeEmulatorHandle,
    form: str,
    data: st.DataObject,
) -> None:
    document = data.draw(price_documents(form), "price")
    quantities = data.draw(usages(document), "usage")
    tenant = next(_tenants)
    catalog = parse_catalog(
        {
            "meters": [{"key": "m", "aggregation": "sum"}],
            "plans": [{"key": "p", "default": True, "metered_prices": {"m": document}}],
        }
    )
    sync = CatalogSync(stripe_client, MemoryStripeObjectRepository())
    assert sync.sync(tenant, catalog).changed
    assert not sync.sync(tenant, catalog).changed
    key = price_lookup_key(tenant, "p", "m")
    price = stripe_client.v1.prices.list({"lookup_keys": [key]}).data[0]
    for usage in quantities:
        invoice = _invoice_for(stripe_client, stripe_emulator, price.id, tenant, usage)
        assert invoice["lines"]["data"][0]["amount"] == oracle(document, usage), usage


def _invoice_for(
    client: stripe.StripeClient,
    emulator: StripeEmulatorHandle,
    price_id: str,
    tenant: int,
    usage: Decimal,
) -> dict[str, Any]:
    customer = client.v1.customers.create({})
    sub = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price_id}]})
    if usage:
        client.v1.billing.meter_events.create(
            {
                "event_name": meter_event_name(tenant, "m"),
                "payload": {"stripe_customer_id": customer.id, "value": format(usage, "f")},
            }
        )
    return emulator.control.close_period(sub.id)


def _tiered(mode: str, *tiers: tuple[int | None, str | None, str | None]) -> dict[str, Any]:
    return {
        "billing_scheme": "tiered",
        "tiers_mode": mode,
        "_tiers": [
            {"up_to": up_to, "unit_amount_decimal": unit, "flat_amount_decimal": flat}
            for up_to, unit, flat in tiers
        ],
    }


def _charge(price: dict[str, Any], usage: str, **config: Any) -> int:
    return pricing.line_amount(price, Decimal(usage), EmulatorConfig(**config)).amount


# Stripe's tiered-pricing docs: 1-5 at $7, 6-10 at $6.50, 11+ at $6 (volume); $5, $4 (graduated).
VOLUME_DOCS = _tiered("volume", (5, "700", None), (10, "650", None), (None, "600", None))
GRADUATED_DOCS = _tiered("graduated", (5, "500", None), (10, "400", None), (None, "300", None))


@pytest.mark.parametrize(
    ("usage", "amount"), [("5", 3500), ("6", 3900), ("20", 12000), ("25", 15000)]
)
def test_volume_example_of_the_stripe_docs(usage: str, amount: int) -> None:
    assert _charge(VOLUME_DOCS, usage) == amount


def test_graduated_example_of_the_stripe_docs() -> None:
    assert _charge(GRADUATED_DOCS, "6") == 2900


def test_package_example_of_the_stripe_docs() -> None:
    hours = {
        "billing_scheme": "per_unit",
        "unit_amount_decimal": "1000",
        "transform_quantity": {"divide_by": 60, "round": "up"},
    }
    assert _charge(hours, "150") == 3000
    line = pricing.line_amount(hours, Decimal(150), EmulatorConfig())
    assert line.quantity == 150
    shown = pricing.line_amount(
        hours, Decimal(150), EmulatorConfig(package_line_quantity="packages")
    )
    assert shown.quantity == 3
    assert (
        _charge({**hours, "transform_quantity": {"divide_by": 60, "round": "down"}}, "150") == 2000
    )


def test_decimal_amounts_round_per_line_half_up_by_default() -> None:
    per_unit = {
        "billing_scheme": "per_unit",
        "unit_amount_decimal": "0.05",
        "transform_quantity": None,
    }
    assert _charge(per_unit, "30") == 2  # the docs: 0.05 x 30 = 1.5 -> 2
    assert _charge(per_unit, "30", amount_rounding="half_even") == 2
    assert _charge(per_unit, "50", amount_rounding="half_even") == 2  # 2.5 -> 2
    assert _charge(per_unit, "50") == 3


def test_graduated_tiers_round_once_unless_configured_per_tier() -> None:
    price = _tiered("graduated", (1, "0.4", None), (None, "0.4", None))
    assert _charge(price, "2") == 1  # 0.8
    assert _charge(price, "2", round_each_tier=True) == 0  # 0.4 -> 0 twice


def test_flat_amounts_at_zero_usage_follow_the_setting() -> None:
    graduated = _tiered("graduated", (10, "1", "500"), (None, "1", "200"))
    assert _charge(graduated, "0") == 500
    assert _charge(graduated, "0", tier_flat_amount_at_zero_usage=False) == 0
    assert _charge(graduated, "11") == 500 + 10 + 200 + 1
    volume = {**graduated, "tiers_mode": "volume"}
    assert _charge(volume, "0") == 500
    assert _charge(volume, "0", tier_flat_amount_at_zero_usage=False) == 0
    assert _charge(volume, "11") == 11 + 200


def test_unknown_settings_are_reported() -> None:
    config = EmulatorConfig(
        amount_rounding="nearest", package_line_quantity="x", unexpanded_tiers="empty"
    )
    assert len(config.validate()) == 3


def test_a_changed_tier_is_a_new_price_holding_the_lookup_key(
    stripe_client: stripe.StripeClient,
) -> None:
    sync = CatalogSync(stripe_client, MemoryStripeObjectRepository())
    catalogs = MemoryCatalogRepository()
    first = apply_and_sync(catalogs, sync, TENANT, load_catalog(EXAMPLE))
    assert first.stripe is not None and first.stripe.changed
    again = apply_and_sync(catalogs, sync, TENANT, load_catalog(EXAMPLE))
    assert again.stripe is not None and not again.stripe.changed and again.diff.is_empty
    key = price_lookup_key(TENANT, "power", "api_calls")
    (old,) = stripe_client.v1.prices.list({"lookup_keys": [key], "expand": ["data.tiers"]}).data
    assert [(t.up_to, t.unit_amount_decimal) for t in old.tiers] == [
        (100_000, Decimal(0)),
        (None, Decimal("0.05")),
    ]
    text = EXAMPLE.read_text().replace("included: 100000", "included: 200000")
    changed = text.replace("api_calls: {limit: 100000", "api_calls: {limit: 200000")
    result = apply_and_sync(catalogs, sync, TENANT, load_catalog(changed))
    assert result.stripe is not None
    assert any(
        line.startswith("updated") and "power/api_calls" in line for line in result.stripe.lines
    )
    (new,) = stripe_client.v1.prices.list({"lookup_keys": [key], "expand": ["data.tiers"]}).data
    assert new.id != old.id and new.tiers[0].up_to == 200_000
    assert not stripe_client.v1.prices.retrieve(old.id).active
    assert len(stripe_client.v1.prices.list({"active": True, "limit": 100}).data) == 3
