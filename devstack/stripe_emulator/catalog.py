"""Customers, products and prices (including metered prices bound to a billing meter).

What a price charges (per unit, tiers, `transform_quantity`) is read and shown by `pricing`.

- Customers: create, retrieve, update, delete (leaves a `deleted` stub), list (`email`),
  search.
- Products: create (an explicit `id` is kept), retrieve, update, list (`active`, `ids[]`),
  search.
- Prices: create with `product` or `product_data`, and
  `recurring[interval|interval_count|usage_type|meter]`; a metered price needs an existing
  meter; `lookup_key` must be unique unless `transfer_lookup_key=true`. Also retrieve, update,
  list (`lookup_keys[]`, `product`, `active`, `type`, `currency`) and search.
`expand[]` beyond a price's `tiers` is accepted and ignored.
"""

from __future__ import annotations

import copy
from typing import Any

from . import payment_methods, pricing
from .core import Call, Emulator
from .errors import invalid, missing_param
from .forms import Params, string_map
from .listing import matches_search, newest_first, paginate, parse_search, search_result
from .state import new_id

JSON = dict[str, Any]
INTERVALS = ("day", "week", "month", "year")


def merge_metadata(current: JSON, params: Params) -> JSON:
    """Stripe's metadata update: keys merge, an empty value deletes, `metadata=""` clears."""
    if params.data.get("metadata") == "":
        return {}
    merged = dict(current)
    for key, value in string_map(params.data.get("metadata"), "metadata").items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _apply_fields(obj: JSON, params: Params, names: tuple[str, ...]) -> None:
    for name in names:
        if name in params:
            obj[name] = params.str(name)


def _search(emu: Emulator, kind: str, call: Call, url: str) -> JSON:
    clauses = parse_search(call.params.req("query"))
    live = [o for o in newest_first(emu.store.table(kind).values()) if not o.get("deleted")]
    return search_result([o for o in live if matches_search(o, clauses)], call.params, url)


def create_customer(emu: Emulator, call: Call) -> JSON:
    """POST /v1/customers."""
    p = call.params
    customer: JSON = {
        "id": new_id("cus", 14),
        "object": "customer",
        "created": emu.now(),
        "livemode": False,
        "email": p.str("email"),
        "name": p.str("name"),
        "description": p.str("description"),
        "metadata": merge_metadata({}, p),
        "delinquent": False,
        "invoice_settings": {"default_payment_method": None},
    }
    emu.store.put("customer", customer)
    method = p.str("payment_method")
    if method is not None:
        payment_methods.attach_to(emu, payment_methods.resolve(emu, method), customer["id"])
    default = p.sub("invoice_settings").str("default_payment_method")
    if default is not None:
        payment_methods.set_default(emu, customer, default)
    emu.emit("customer.created", customer)
    return customer


def retrieve_customer(emu: Emulator, call: Call) -> JSON:
    """GET /v1/customers/{id}; a deleted customer answers its `deleted: true` stub."""
    return emu.store.get("customer", call.arg("id"))


def update_customer(emu: Emulator, call: Call) -> JSON:
    """POST /v1/customers/{id}."""
    customer = _live_customer(emu, call.arg("id"))
    previous = copy.deepcopy(customer)
    _apply_fields(customer, call.params, ("email", "name", "description"))
    customer["metadata"] = merge_metadata(customer["metadata"], call.params)
    settings = call.params.sub("invoice_settings")
    if "default_payment_method" in settings:
        payment_methods.set_default(emu, customer, settings.str("default_payment_method"))
    emu.emit("customer.updated", customer, _changed(previous, customer))
    return customer


def delete_customer(emu: Emulator, call: Call) -> JSON:
    """DELETE /v1/customers/{id}: fires customer.deleted and leaves a stub."""
    customer = _live_customer(emu, call.arg("id"))
    stub = {"id": customer["id"], "object": "customer", "deleted": True}
    emu.store.put("customer", stub)
    emu.emit("customer.deleted", customer)
    return stub


def list_customers(emu: Emulator, call: Call) -> JSON:
    """GET /v1/customers with optional `email`."""
    email = call.params.str("email")
    items = [
        c
        for c in newest_first(emu.store.table("customer").values())
        if not c.get("deleted") and (email is None or c.get("email") == email)
    ]
    return paginate(items, call.params, "/v1/customers")


def search_customers(emu: Emulator, call: Call) -> JSON:
    """GET /v1/customers/search (exact-match clauses only)."""
    return _search(emu, "customer", call, "/v1/customers/search")


def _live_customer(emu: Emulator, customer_id: str) -> JSON:
    customer = emu.store.get("customer", customer_id)
    if customer.get("deleted"):
        raise invalid(f"No such customer: '{customer_id}'", code="resource_missing")
    return customer


def _changed(before: JSON, after: JSON) -> JSON:
    return {k: v for k, v in before.items() if after.get(k) != v}


def create_product(emu: Emulator, call: Call) -> JSON:
    """POST /v1/products (an explicit `id` is honoured and must be new)."""
    p = call.params
    product_id = p.str("id") or new_id("prod", 14)
    if emu.store.find("product", product_id) is not None:
        raise invalid(
            f"Product already exists with ID {product_id}.", "id", "resource_already_exists"
        )
    return _new_product(emu, product_id, p)


def _new_product(emu: Emulator, product_id: str, p: Params) -> JSON:
    now = emu.now()
    product: JSON = {
        "id": product_id,
        "object": "product",
        "active": p.bool("active", True),
        "name": p.req("name"),
        "description": p.str("description"),
        "default_price": None,
        "metadata": merge_metadata({}, p),
        "created": now,
        "updated": now,
        "livemode": False,
    }
    emu.store.put("product", product)
    emu.emit("product.created", product)
    return product


def retrieve_product(emu: Emulator, call: Call) -> JSON:
    """GET /v1/products/{id}."""
    return emu.store.get("product", call.arg("id"))


def update_product(emu: Emulator, call: Call) -> JSON:
    """POST /v1/products/{id}: name, description, active, metadata, default_price."""
    product = emu.store.get("product", call.arg("id"))
    previous = copy.deepcopy(product)
    _apply_fields(product, call.params, ("name", "description", "default_price"))
    product["active"] = call.params.bool("active", product["active"])
    product["metadata"] = merge_metadata(product["metadata"], call.params)
    product["updated"] = emu.now()
    emu.emit("product.updated", product, _changed(previous, product))
    return product


def list_products(emu: Emulator, call: Call) -> JSON:
    """GET /v1/products with optional `active` and `ids[]`."""
    active = call.params.bool("active")
    ids = set(call.params.list("ids"))
    items = [
        prod
        for prod in newest_first(emu.store.table("product").values())
        if (active is None or prod["active"] == active) and (not ids or prod["id"] in ids)
    ]
    return paginate(items, call.params, "/v1/products")


def search_products(emu: Emulator, call: Call) -> JSON:
    """GET /v1/products/search."""
    return _search(emu, "product", call, "/v1/products/search")


def create_price(emu: Emulator, call: Call) -> JSON:
    """POST /v1/prices: one-time or recurring; metered prices need `recurring[meter]`."""
    p = call.params
    product_id = _price_product(emu, p)
    price: JSON = {
        "id": new_id("price", 24),
        "object": "price",
        "active": p.bool("active", True),
        "created": emu.now(),
        "currency": p.req("currency").lower(),
        "livemode": False,
        "lookup_key": None,
        "metadata": merge_metadata({}, p),
        "nickname": p.str("nickname"),
        "product": product_id,
        "tax_behavior": "unspecified",
        **pricing.amount_fields(p),
        **_recurring(emu, p.sub("recurring")),
    }
    _claim_lookup_key(emu, price, p)
    emu.store.put("price", price)
    emu.emit("price.created", price)
    return _price_view(emu, price, p)


def _price_view(emu: Emulator, price: JSON, p: Params, field: str = "tiers") -> JSON:
    return pricing.view(price, pricing.expands(p, field), emu.config)


def _price_product(emu: Emulator, p: Params) -> str:
    product_id = p.str("product")
    if product_id is not None:
        emu.store.get("product", product_id, param="product")
        return product_id
    data = p.sub("product_data")
    if "name" not in data:
        raise missing_param("product")
    return str(_new_product(emu, new_id("prod", 14), data)["id"])


def _recurring(emu: Emulator, r: Params) -> JSON:
    if not r.data:
        return {"type": "one_time", "recurring": None}
    interval = r.req("interval")
    if interval not in INTERVALS:
        raise invalid(f"Invalid interval: {interval}", "recurring[interval]")
    usage_type = r.str("usage_type") or "licensed"
    if usage_type not in ("licensed", "metered"):
        raise invalid(f"Invalid usage_type: {usage_type}", "recurring[usage_type]")
    meter = r.str("meter")
    if usage_type == "metered" and meter is None:
        raise missing_param("recurring[meter]")
    if meter is not None:
        emu.store.get("billing.meter", meter, "billing meter", "recurring[meter]")
    recurring = {
        "interval": interval,
        "interval_count": r.int("interval_count", 1),
        "usage_type": usage_type,
        "meter": meter,
        "aggregate_usage": None,
        "trial_period_days": None,
    }
    return {"type": "recurring", "recurring": recurring}


def _claim_lookup_key(emu: Emulator, price: JSON, p: Params) -> None:
    key = p.str("lookup_key", max_len=200)
    if key is None:
        return
    holders = [o for o in emu.store.table("price").values() if o.get("lookup_key") == key]
    holders = [o for o in holders if o["id"] != price["id"]]
    if holders and not p.bool("transfer_lookup_key", False):
        raise invalid(
            f"A price (`{holders[0]['id']}`) already uses that lookup key.",
            "lookup_key",
            "lookup_key_already_exists",
        )
    for holder in holders:
        holder["lookup_key"] = None
    price["lookup_key"] = key


def retrieve_price(emu: Emulator, call: Call) -> JSON:
    """GET /v1/prices/{id} (`expand[]=tiers` shows the tiers)."""
    return _price_view(emu, emu.store.get("price", call.arg("id")), call.params)


def update_price(emu: Emulator, call: Call) -> JSON:
    """POST /v1/prices/{id}: active, nickname, metadata, lookup_key (+ transfer_lookup_key)."""
    price = emu.store.get("price", call.arg("id"))
    previous = copy.deepcopy(price)
    price["active"] = call.params.bool("active", price["active"])
    _apply_fields(price, call.params, ("nickname",))
    price["metadata"] = merge_metadata(price["metadata"], call.params)
    _claim_lookup_key(emu, price, call.params)
    emu.emit("price.updated", price, _changed(previous, price))
    return _price_view(emu, price, call.params)


def list_prices(emu: Emulator, call: Call) -> JSON:
    """GET /v1/prices: filters `active`, `product`, `type`, `currency`, `lookup_keys[]`."""
    p = call.params
    wanted = {
        "active": p.bool("active"),
        "product": p.str("product"),
        "type": p.str("type"),
        "currency": p.str("currency"),
    }
    keys = set(p.list("lookup_keys"))
    items = [
        _price_view(emu, price, p, "data.tiers")
        for price in newest_first(emu.store.table("price").values())
        if all(v is None or price.get(k) == v for k, v in wanted.items())
        and (not keys or price.get("lookup_key") in keys)
    ]
    return paginate(items, p, "/v1/prices")


def search_prices(emu: Emulator, call: Call) -> JSON:
    """GET /v1/prices/search (`expand[]=data.tiers` shows the tiers)."""
    found = _search(emu, "price", call, "/v1/prices/search")
    found["data"] = [_price_view(emu, price, call.params, "data.tiers") for price in found["data"]]
    return found
