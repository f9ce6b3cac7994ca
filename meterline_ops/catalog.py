"""`meterline catalog apply`, `meterline customers create`, `meterline grants add`.

`catalog apply FILE --tenant NAME` validates the file (every problem with its path, exit 2),
prints the diff, stores the new version, and syncs meters, products and prices to Stripe
(idempotent: found again by event name, product id and lookup key; never duplicated).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from meterline.catalog import PostgresCatalogRepository, load_catalog
from meterline.entitlements import NewGrant, PostgresCustomerRepository, PostgresGrantRepository
from meterline.errors import FieldError, ValidationFailed
from meterline.settings import StripeSettings, load_section
from meterline.stripe import (
    PostgresStripeObjectRepository,
    apply_catalog,
    ensure_stripe_customer,
    stripe_client,
)
from meterline.tenants import PostgresTenantRepository
from meterline_ops.common import database, friendly, out


def register(app: typer.Typer) -> None:
    catalog = typer.Typer(no_args_is_help=True, help="The tenant's catalog (meters, plans).")
    catalog.command("apply")(catalog_apply)
    app.add_typer(catalog, name="catalog")
    customers = typer.Typer(no_args_is_help=True, help="A tenant's customers.")
    customers.command("create")(customers_create)
    app.add_typer(customers, name="customers")
    grants = typer.Typer(no_args_is_help=True, help="Credits, top-ups and overrides.")
    grants.command("add")(grants_add)
    app.add_typer(grants, name="grants")


@friendly
def catalog_apply(
    file: Path = typer.Argument(..., help="The catalog YAML file."),
    tenant: str = typer.Option(..., help="Tenant name."),
    stripe: bool = typer.Option(True, help="Sync meters, products and prices to Stripe."),
) -> None:
    """Validate, diff, apply and sync a catalog file (running it again changes nothing)."""
    catalog = load_catalog(file)
    with database() as pool:
        tenant_id = PostgresTenantRepository(pool).get_tenant(tenant).id
        objects = PostgresStripeObjectRepository(pool)
        result = apply_catalog(PostgresCatalogRepository(pool), objects, tenant_id, catalog, stripe)
    for line in result.diff.lines() if not result.diff.is_empty else []:
        out(line)
    state = "unchanged" if result.diff.is_empty else "applied"
    out(f"catalog version {result.version} for {tenant}: {state}")
    if result.stripe is None:
        out("stripe: skipped (no METERLINE_STRIPE_API_BASE and no running stack)")
        return
    for line in result.stripe.lines:
        out(f"stripe: {line}")


@friendly
def customers_create(
    customer: str = typer.Argument(..., help="The tenant's own customer id."),
    tenant: str = typer.Option(..., help="Tenant name."),
    name: str | None = typer.Option(None),
    email: str | None = typer.Option(None),
    stripe: bool = typer.Option(False, help="Create the Stripe customer now."),
) -> None:
    """Create a customer (its Stripe customer is otherwise created on first need)."""
    with database() as pool:
        tenant_id = PostgresTenantRepository(pool).get_tenant(tenant).id
        customers = PostgresCustomerRepository(pool)
        customers.create(tenant_id, customer, name, email)
        out(f"created customer {customer} for {tenant}")
        if stripe:
            client = stripe_client(load_section(StripeSettings))
            out(f"stripe customer {ensure_stripe_customer(client, customers, tenant_id, customer)}")


@friendly
def grants_add(
    customer: str = typer.Argument(..., help="The customer id."),
    tenant: str = typer.Option(..., help="Tenant name."),
    feature: str = typer.Option(..., help="A feature key of the catalog."),
    kind: str = typer.Option("credit", help="credit, top_up or override."),
    amount: float | None = typer.Option(None, help="Units; omit with override for unlimited."),
    expires: datetime | None = typer.Option(None, help="Expiry (UTC when no offset is given)."),
    note: str | None = typer.Option(None),
) -> None:
    """Add a credit, top-up or enterprise override of one feature for one customer."""
    with database() as pool:
        tenant_id = PostgresTenantRepository(pool).get_tenant(tenant).id
        current = PostgresCatalogRepository(pool).current(tenant_id)
        if current is None or current[1].feature(feature) is None:
            raise ValidationFailed([FieldError("feature", f"no feature {feature!r}")])
        expires_at = expires.astimezone() if expires and expires.tzinfo else _utc(expires)
        grant = NewGrant(customer, feature, kind, amount, None, expires_at, note)
        created = PostgresGrantRepository(pool).add(tenant_id, grant)
    limit = "unlimited" if created.amount is None else f"{created.amount:g}"
    out(f"added grant {created.id}: {created.kind} {limit} {feature} for {customer}")


def _utc(when: datetime | None) -> datetime | None:
    return None if when is None else when.replace(tzinfo=UTC)
