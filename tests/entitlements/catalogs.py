"""Catalogs and helpers shared by the entitlement tests."""

from __future__ import annotations

from pathlib import Path

from meterline.catalog import Catalog, load_catalog

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "catalog.example.yaml"

SMALL_YAML = """
meters:
  - {key: api_calls, aggregation: sum}
  - {key: seats, aggregation: max}
features:
  - {key: api_calls, kind: metered, meter: api_calls}
  - {key: export, kind: boolean}
  - {key: support, kind: static}
  - {key: sso, kind: boolean}
plans:
  - key: free
    default: true
    features:
      api_calls: {limit: 50, reset: week, overage: block}
  - key: basic
    price: {amount: 900, currency: usd, interval: month}
    features:
      api_calls: {limit: 1000, reset: month, overage: block}
      support: email
  - key: power
    price: {amount: 4900, currency: usd, interval: month}
    metered_prices:
      api_calls: {unit_amount_decimal: "0.05", currency: usd}
    features:
      api_calls: {limit: 100000, reset: billing_period, overage: allow}
      export: true
      support: priority
  - key: unlimited
    features:
      api_calls: {limit: null}
      export: true
payment_policies:
  past_due: {grace_days: 7, then: free}
  unpaid: {plan: free}
  canceled: {plan: free}
  paused: {plan: free}
"""


def small_catalog() -> Catalog:
    return load_catalog(SMALL_YAML)


def example_catalog() -> Catalog:
    return load_catalog(EXAMPLE)
