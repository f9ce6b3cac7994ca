"""Apply a catalog: store it as the tenant's next version, then sync it to Stripe when configured.

What `meterline catalog apply` and the demo share.
"""

from __future__ import annotations

from meterline.catalog import Catalog, CatalogRepository
from meterline.errors import ConfigError
from meterline.settings import StripeSettings, load_section
from meterline.stripe.catalog_sync import (
    ApplyResult,
    CatalogSync,
    StripeObjectRepository,
    apply_and_sync,
)
from meterline.stripe.client import stripe_client


def apply_catalog(
    catalogs: CatalogRepository,
    objects: StripeObjectRepository,
    tenant_id: int,
    catalog: Catalog,
    to_stripe: bool = True,
) -> ApplyResult:
    """Store the catalog and sync it to Stripe (when `to_stripe` and Stripe is configured)."""
    sync = _stripe_sync(objects) if to_stripe else None
    return apply_and_sync(catalogs, sync, tenant_id, catalog)


def _stripe_sync(objects: StripeObjectRepository) -> CatalogSync | None:
    try:
        settings = load_section(StripeSettings)
    except ConfigError:
        return None
    return CatalogSync(stripe_client(settings), objects)
