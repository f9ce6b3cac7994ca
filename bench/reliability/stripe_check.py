"""The Stripe leg of the comparison: what the reporter pushed to the Stripe emulator.

Available when the stack runs the Stripe emulator and the reporter package has its jobs module.
`prepare` syncs the tenant's catalog to Stripe and gives every customer a Stripe customer (the
reporter pushes only customers that have one); the scenario then sends events into hours that
have already ended; `push` runs the reporter's push job once (`python -m reporter.jobs push`,
with no settle delay); `totals` sums Stripe's hourly meter event summaries per (customer, meter).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterable

from bench.reliability.ledger import Key
from bench.runner import CATALOG, ROOT
from meterline.catalog import PostgresCatalogRepository, load_catalog
from meterline.entitlements.postgres import PostgresCustomerRepository
from meterline.postgres import open_pool
from meterline.settings import StripeSettings
from meterline.stripe.catalog_sync import CatalogSync, apply_and_sync
from meterline.stripe.client import stripe_client
from meterline.stripe.postgres import PostgresStripeObjectRepository
from meterline.stripe.subscriptions import ensure_stripe_customer
from meterline.stripe.summaries import StripeSummaryReader
from meterline_devstack.stack import DevStack

HOUR_S = 3600
BILLED_PLAN = "power"
BILLED_METERS = ("api_calls",)  # the meters with a metered price on the plan (demo catalog)


def available(stack: DevStack) -> bool:
    return "stripe" in stack.urls and importlib.util.find_spec("reporter.jobs") is not None


def _settings(stack: DevStack) -> StripeSettings:
    return StripeSettings(api_base=stack.urls["stripe"], max_network_retries=2)


def prepare(stack: DevStack, tenant_id: int, customers: Iterable[str]) -> None:
    """Sync the demo catalog to Stripe, create a Stripe customer for each customer and put it
    on the plan with a metered price (a manual subscription in its current period)."""
    client = stripe_client(_settings(stack))
    with open_pool(stack.urls["postgres"], max_size=2) as pool:
        sync = CatalogSync(client, PostgresStripeObjectRepository(pool))
        apply_and_sync(PostgresCatalogRepository(pool), sync, tenant_id, load_catalog(CATALOG))
        repo = PostgresCustomerRepository(pool)
        for customer in customers:
            repo.create(tenant_id, customer, None, None)
            ensure_stripe_customer(client, repo, tenant_id, customer)
        with pool.connection() as conn:
            conn.execute(_SUBSCRIBE, (tenant_id, BILLED_PLAN, tenant_id))


_SUBSCRIBE = """
    INSERT INTO subscriptions (tenant_id, customer, source, plan, status,
                               current_period_start, current_period_end)
    SELECT %s, id, 'manual', %s, 'active', now() - interval '10 days', now() + interval '20 days'
    FROM customers WHERE tenant_id = %s
"""


def push(stack: DevStack, timeout: float = 300.0) -> str:
    """Run the reporter's push job once; returns its output (raises if it exits non-zero)."""
    env = {**stack.environment(), "METERLINE_REPORTER_SETTLE_S": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "reporter.jobs", "push"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"reporter push exited {done.returncode}: {done.stderr[-500:]}")
    return done.stdout.strip()


def totals(stack: DevStack, tenant_id: int, hours: int) -> dict[Key, float]:
    """Stripe's value per (customer, meter) over the last `hours` hours (the current one too)."""
    reader = StripeSummaryReader(stripe_client(_settings(stack)))
    now = int(time.time())
    start, end = now - now % HOUR_S - hours * HOUR_S, now - now % HOUR_S + HOUR_S
    with open_pool(stack.urls["postgres"], max_size=2) as pool, pool.connection() as conn:
        meters = conn.execute(
            "SELECT key, stripe_id FROM stripe_objects "
            "WHERE tenant_id = %s AND kind = 'meter' AND key = ANY(%s)",
            (tenant_id, list(BILLED_METERS)),
        ).fetchall()
        customers = conn.execute(
            "SELECT id, stripe_customer_id FROM customers "
            "WHERE tenant_id = %s AND stripe_customer_id IS NOT NULL",
            (tenant_id,),
        ).fetchall()
    found: dict[Key, float] = {}
    for meter, meter_id in meters:
        for customer, stripe_id in customers:
            value = sum(reader.hourly(meter_id, stripe_id, start, end).values())
            if value:
                found[(customer, meter)] = float(value)
    return found
