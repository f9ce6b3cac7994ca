"""Sync a catalog's credit packs to Stripe: one product and one one-time price per pack.

Found again by stable names, like plans (see `catalog_sync`): product id
`ml_<tenant id>_pack_<pack key>`, price `lookup_key` `ml_<tenant id>_pack_<pack key>`. A changed
amount or currency creates a new price that takes the lookup key over and archives the old one.
Ids are stored in `stripe_objects` (kind `pack_product` and `pack_price`, key = the pack key);
the price's `metadata.meterline_pack` names the pack.
"""

from __future__ import annotations

from typing import Any

import stripe

from meterline.catalog import CreditPack


def pack_product_id(tenant_id: int, pack: str) -> str:
    return f"ml_{tenant_id}_pack_{pack}"


def pack_lookup_key(tenant_id: int, pack: str) -> str:
    return f"ml_{tenant_id}_pack_{pack}"


class PackSync:
    """Makes Stripe's products and prices match a tenant's credit packs (idempotent)."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    def product(self, tenant_id: int, pack: CreditPack) -> tuple[str, str]:
        """The pack's product id, and `created`, `updated` or `unchanged`."""
        product_id = pack_product_id(tenant_id, pack.key)
        try:
            product = self._client.v1.products.retrieve(product_id)
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing":
                raise
            metadata = {"meterline_tenant": str(tenant_id), "meterline_pack": pack.key}
            params = {"id": product_id, "name": pack.display_name, "metadata": metadata}
            self._client.v1.products.create(params)  # type: ignore[arg-type]
            return product_id, "created"
        if product.name == pack.display_name and product.active:
            return product_id, "unchanged"
        update = {"name": pack.display_name, "active": True}
        self._client.v1.products.update(product_id, update)  # type: ignore[arg-type]
        return product_id, "updated"

    def price(self, tenant_id: int, pack: CreditPack, product: str) -> tuple[str, str]:
        """The pack's active price id, and `created`, `updated` or `unchanged`."""
        key = pack_lookup_key(tenant_id, pack.key)
        listed = self._client.v1.prices.list({"lookup_keys": [key], "limit": 1}).data
        current = listed[0] if listed else None
        if current is not None and _same(current, pack, product):
            return str(current.id), "unchanged"
        params: dict[str, Any] = {
            "product": product,
            "currency": pack.price.currency,
            "unit_amount": pack.price.amount,
            "lookup_key": key,
            "transfer_lookup_key": True,
            "metadata": {"meterline_pack": pack.key},
        }
        created = self._client.v1.prices.create(params)  # type: ignore[arg-type]
        if current is not None:
            self._client.v1.prices.update(current.id, {"active": False})
        return str(created.id), "created" if current is None else "updated"


def _same(price: stripe.Price, pack: CreditPack, product: str) -> bool:
    return (
        price.active
        and price.recurring is None
        and price.unit_amount == pack.price.amount
        and price.currency == pack.price.currency
        and price.product == product
    )
