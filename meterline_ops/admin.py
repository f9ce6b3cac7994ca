"""Schema, settings, tenants and keys."""

from __future__ import annotations

import typer

from meterline.postgres import apply_migrations, connect
from meterline.tenants import PostgresTenantRepository
from meterline_ops.common import database, database_url, friendly, out, settings


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
    config = typer.Typer(no_args_is_help=True, help="Settings.")
    config.command("check")(config_check)
    app.add_typer(config, name="config")
    tenants = typer.Typer(no_args_is_help=True, help="Tenants (one per SaaS product).")
    tenants.command("create")(tenants_create)
    app.add_typer(tenants, name="tenants")
    keys = typer.Typer(no_args_is_help=True, help="API keys.")
    keys.command("create")(keys_create)
    keys.command("list")(keys_list)
    keys.command("revoke")(keys_revoke)
    app.add_typer(keys, name="keys")


@friendly
def migrate() -> None:
    """Apply pending schema migrations (running it again changes nothing)."""
    with connect(database_url()) as conn:
        applied = apply_migrations(conn)
    for m in applied:
        out(f"applied {m.version:04d}_{m.name}")
    if not applied:
        out("schema is up to date")


@friendly
def config_check() -> None:
    """Validate every setting and print the effective configuration (secrets hidden)."""
    s = settings()
    for section, values in s.model_dump().items():
        for key, value in values.items():
            shown = "***" if any(w in key for w in ("key", "secret")) else value
            out(f"{section}.{key} = {shown}")
    out("configuration is valid")


@friendly
def tenants_create(name: str) -> None:
    """Create a tenant."""
    with database() as pool:
        tenant = PostgresTenantRepository(pool).create_tenant(name)
    out(f"created tenant {tenant.name} (id {tenant.id})")


@friendly
def keys_create(
    tenant: str = typer.Option(..., help="Tenant name."),
    scope: list[str] = typer.Option(..., help="ingest, read, admin, billing; repeat for several."),
) -> None:
    """Create an API key. The key is printed alone on the last line, once."""
    with database() as pool:
        info, key = PostgresTenantRepository(pool).create_key(tenant, scope)
    out(f"created {info.id} for {tenant} with scopes {','.join(info.scopes)}")
    out(key)


@friendly
def keys_list(tenant: str = typer.Option(..., help="Tenant name.")) -> None:
    """List a tenant's keys (never their secrets)."""
    with database() as pool:
        for k in PostgresTenantRepository(pool).list_keys(tenant):
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
            out(f"{k.id}  {','.join(k.scopes):<20} {state}")


@friendly
def keys_revoke(key_id: str) -> None:
    """Revoke a key; services stop accepting it within 60 seconds."""
    with database() as pool:
        PostgresTenantRepository(pool).revoke_key(key_id)
    out(f"revoked {key_id}")
