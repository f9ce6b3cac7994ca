"""`build_dunning`: the dunning service on Postgres, as both services assemble it.

`invoices` reads Stripe (`meterline.stripe.invoice_facts.StripeInvoices`).

The entitlements service passes its own repositories and cached catalog; the reporter, whose
scheduler runs the timed steps, lets them be made here on its pool.
"""

from __future__ import annotations

from collections.abc import Callable

from meterline.catalog import Catalog, PostgresCatalogRepository
from meterline.clock import Clock
from meterline.dunning.model import DunningPolicy
from meterline.dunning.postgres import PostgresDunningRepository
from meterline.dunning.service import Dunning, DunningPorts, InvoiceReader
from meterline.entitlements import (
    CustomerRepository,
    PostgresCustomerRepository,
    PostgresSubscriptionRepository,
    SubscriptionRepository,
)
from meterline.errors import NotFound
from meterline.postgres import Pool


def build_dunning(
    pool: Pool,
    invoices: InvoiceReader,
    policy: DunningPolicy,
    clock: Clock,
    catalog_of: Callable[[int], Catalog] | None = None,
    customers: CustomerRepository | None = None,
    subscriptions: SubscriptionRepository | None = None,
) -> Dunning:
    ports = DunningPorts(
        repository=PostgresDunningRepository(pool, policy),
        invoices=invoices,
        customers=customers or PostgresCustomerRepository(pool),
        subscriptions=subscriptions or PostgresSubscriptionRepository(pool),
        catalog_of=catalog_of or _current_catalog(PostgresCatalogRepository(pool)),
        policy=policy,
        clock=clock,
    )
    return Dunning(ports)


def _current_catalog(catalogs: PostgresCatalogRepository) -> Callable[[int], Catalog]:
    def current(tenant_id: int) -> Catalog:
        found = catalogs.current(tenant_id)
        if found is None:
            raise NotFound(f"tenant {tenant_id} has no catalog")
        return found[1]

    return current
