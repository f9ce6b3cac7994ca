"""`meterline revenue rebuild --tenant NAME`: the tenant's revenue events rebuilt from Stripe.

What a rebuild can know, and what it cannot, is in meterline/revenue/rebuild.py: the
subscription events Stripe still lists, plus a start (and end) rebuilt from each older
subscription's current object. The tenant's events are replaced in one transaction.
"""

from __future__ import annotations

from functools import partial

import typer

from meterline.entitlements.postgres import PostgresCustomerRepository
from meterline.revenue.postgres import PostgresRevenueEventStore
from meterline.revenue.rebuild import rebuild_tenant
from meterline.settings import StripeSettings, load_section
from meterline.stripe import stripe_client
from meterline.stripe.revenue_history import (
    StripeInvoiceLines,
    invoice_history,
    subscription_history,
)
from meterline.tenants import PostgresTenantRepository
from meterline_ops.common import database, friendly, out


def register(app: typer.Typer) -> None:
    revenue = typer.Typer(no_args_is_help=True, help="Revenue events (MRR, movements, NRR).")
    revenue.command("rebuild")(revenue_rebuild)
    app.add_typer(revenue, name="revenue")


@friendly
def revenue_rebuild(tenant: str = typer.Option(..., help="Tenant name.")) -> None:
    """Replace the tenant's revenue events with what Stripe tells now; safe to run again."""
    client = stripe_client(load_section(StripeSettings))
    with database() as pool:
        tenant_id = PostgresTenantRepository(pool).get_tenant(tenant).id
        invoices = (partial(invoice_history, client), StripeInvoiceLines(client))
        store = PostgresRevenueEventStore(pool)
        states = rebuild_tenant(
            partial(subscription_history, client),
            PostgresCustomerRepository(pool),
            store,
            tenant_id,
            invoices,
        )
        closed = len(store.invoices(tenant_id))
    rebuilt = sum(1 for event_id, _ in states if event_id.startswith("rebuild:"))
    out(
        f"revenue events for {tenant}: {len(states)} "
        f"({len(states) - rebuilt} from Stripe events, {rebuilt} rebuilt from subscriptions); "
        f"closed invoices: {closed}"
    )
