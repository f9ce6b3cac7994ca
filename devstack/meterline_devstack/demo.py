"""The `make run` demo: a tenant with keys and the demo catalog, then each service's demo step.

Each step is a `run(ctx: DemoContext) -> None` (demo_context.py); steps print what they show
and may leave a background thread running (the steady traffic) until the stack stops.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

from meterline.catalog import PostgresCatalogRepository, load_catalog
from meterline.errors import Conflict
from meterline.postgres import open_pool
from meterline.stripe import PostgresStripeObjectRepository, apply_catalog
from meterline.tenants import PostgresTenantRepository
from meterline_devstack import demo_billing, demo_entitlements, demo_example, demo_traffic
from meterline_devstack.demo_context import DemoContext, out
from meterline_devstack.stack import DevStack

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "deploy" / "catalog.example.yaml"
STEPS: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("traffic", demo_traffic.run),
    ("entitlements", demo_entitlements.run),
    ("billing", demo_billing.run),
    ("example", demo_example.run),
]


def announce(stack: DevStack) -> None:
    """Print every URL of the running stack."""
    out("Meterline is running:")
    for name, url in stack.urls.items():
        out(f"  {name:<13} {url}")
    out(f"stack file: {stack.home / 'stack.json'}   (Ctrl-C stops everything)")


def announce_then_demo(stack: DevStack) -> None:
    announce(stack)
    run_demo(stack)


def run_demo(stack: DevStack) -> None:
    """Prepare, then run each step; a failing step is reported and the stack keeps running."""
    ctx = prepare(stack)
    for name, step in STEPS:
        try:
            step(ctx)
        except Exception:
            out(f"demo step demo_{name} failed (the stack keeps running):")
            traceback.print_exc()


def prepare(stack: DevStack) -> DemoContext:
    """Create the demo tenant (or reuse it), one key per scope, and apply the demo catalog."""
    ctx = DemoContext(stack)
    with open_pool(stack.urls["postgres"], max_size=2) as pool:
        tenants = PostgresTenantRepository(pool)
        try:
            ctx.tenant_id = tenants.create_tenant(ctx.tenant).id
        except Conflict:
            ctx.tenant_id = tenants.get_tenant(ctx.tenant).id
        for scope in ("ingest", "read", "admin"):
            ctx.keys[scope] = tenants.create_key(ctx.tenant, [scope])[1]
        catalogs, objects = PostgresCatalogRepository(pool), PostgresStripeObjectRepository(pool)
        diff = apply_catalog(catalogs, objects, ctx.tenant_id, load_catalog(CATALOG)).diff
    out(
        f"demo tenant {ctx.tenant!r}: catalog {CATALOG.name} "
        + ("unchanged" if diff.is_empty else "applied")
    )
    for scope, key in ctx.keys.items():
        out(f"  {scope:<7} key: {key}")
    return ctx
