"""The example app on the real stack: the entitlements API and the aggregator as processes
(`python -m ...`, as `make run` starts them) on this test's Postgres, Redis and topics, the
session's Stripe emulator with Meterline's webhook registered, the demo catalog synced to it,
and the example app itself as a process."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from meterline.catalog import load_catalog
from meterline.postgres import open_pool
from meterline.tenants import PostgresTenantRepository
from meterline_devstack.process import ManagedProcess, free_port
from tests.entitlements.conftest import WEBHOOK_SECRET, make_tenant
from tests.fixtures.stripe import StripeEmulatorHandle

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "deploy" / "catalog.example.yaml"


@dataclass(frozen=True)
class ExampleStack:
    app: str  # the example app's URL
    entitlements: str
    stripe: StripeEmulatorHandle


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _service(
    name: str, module: str, env: dict[str, str], logs: Path, health: str
) -> ManagedProcess:
    return ManagedProcess(
        name,
        [sys.executable, "-m", module],
        logs / f"{name}.log",
        lambda: _healthy(health),
        env=env,
        cwd=ROOT,
    )


@pytest.fixture
def example_stack(
    service_env: dict[str, str], stripe_emulator: StripeEmulatorHandle, tmp_path: Path
) -> Iterator[ExampleStack]:
    make_tenant(service_env["METERLINE_DATABASE_URL"], load_catalog(CATALOG), stripe_emulator)
    with open_pool(service_env["METERLINE_DATABASE_URL"], max_size=1) as pool:
        key = PostgresTenantRepository(pool).create_key("acme", ["billing", "read", "ingest"])[1]
    env = {
        **service_env,
        "METERLINE_STRIPE_API_BASE": stripe_emulator.url,
        "METERLINE_STRIPE_API_KEY": stripe_emulator.api_key,
        "METERLINE_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "METERLINE_AGGREGATOR_GROUP_ID": f"example-{uuid.uuid4().hex[:8]}",
    }
    ports = {name: free_port() for name in ("entitlements", "aggregator", "app")}
    entitlements = f"http://127.0.0.1:{ports['entitlements']}"
    app = f"http://127.0.0.1:{ports['app']}"
    procs = [
        _service("entitlements", "entitlements_api",
                 {**env, "METERLINE_ENTITLEMENTS_PORT": str(ports["entitlements"]),
                  "METERLINE_ENTITLEMENTS_DRAIN_SECONDS": "1"},
                 tmp_path, f"{entitlements}/healthz"),
        _service("aggregator", "aggregator",
                 {**env, "METERLINE_AGGREGATOR_PORT": str(ports["aggregator"])},
                 tmp_path, f"http://127.0.0.1:{ports['aggregator']}/healthz"),
        _service("example", "examples.saas_app",
                 {"METERLINE_EXAMPLE_ENTITLEMENTS_URL": entitlements,
                  "METERLINE_EXAMPLE_API_KEY": key,
                  "METERLINE_EXAMPLE_PORT": str(ports["app"])},
                 tmp_path, f"{app}/healthz"),
    ]  # fmt: skip
    stripe_emulator.control.add_webhook_endpoint(
        f"{entitlements}/v1/stripe/webhook", secret=WEBHOOK_SECRET
    )
    try:
        with ThreadPoolExecutor(len(procs)) as starting:  # side by side: each waits for itself
            for started in [starting.submit(proc.start, 90) for proc in procs]:
                started.result()
        yield ExampleStack(app, entitlements, stripe_emulator)
    finally:
        for proc in reversed(procs):
            proc.stop()
