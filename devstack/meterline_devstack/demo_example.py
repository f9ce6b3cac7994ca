"""Demo step: the example app (`examples/saas_app`), a small SaaS whose customers sign up,
subscribe through Checkout, use API calls and change or cancel their plan, all through
Meterline's public APIs. It runs as a supervised process of the stack (stack.json key
`example`), on port 8010 when free, with a key of the demo tenant holding `billing`, `read`
and `ingest` (what an app's backend needs: no `admin`). Runs after the entitlements step,
which registers Meterline's Stripe webhook with the emulator (Checkout activates plans
through it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

from meterline.postgres import open_pool
from meterline.tenants import PostgresTenantRepository
from meterline_devstack.demo_context import DemoContext, out
from meterline_devstack.process import ManagedProcess, free_port, port_open

ROOT = Path(__file__).resolve().parents[2]
PORT = 8010
SCOPES = ["billing", "read", "ingest"]


def run(ctx: DemoContext) -> None:
    url = ctx.stack.urls.get("entitlements")
    if not url or not (ROOT / "examples" / "saas_app").is_dir():
        out("example app: skipped (no entitlements service, or no examples/ in this checkout)")
        return
    with open_pool(ctx.stack.urls["postgres"], max_size=1) as pool:
        key = PostgresTenantRepository(pool).create_key(ctx.tenant, SCOPES)[1]
    port = PORT if not port_open(PORT) else free_port()
    app = f"http://127.0.0.1:{port}"
    ctx.stack.add_process("example", app, example_process(ctx.stack.home, url, key, port))
    out(f"example app: {app}  (sign up, subscribe with the emulator's Checkout, use, upgrade)")


def example_process(home: Path, entitlements: str, key: str, port: int) -> ManagedProcess:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {
        "PYTHONPATH": path,
        "METERLINE_EXAMPLE_ENTITLEMENTS_URL": entitlements,
        "METERLINE_EXAMPLE_API_KEY": key,
        "METERLINE_EXAMPLE_PORT": str(port),
    }
    return ManagedProcess(
        "example",
        [sys.executable, "-m", "examples.saas_app"],
        home / "logs" / "example.log",
        lambda: _healthy(f"http://127.0.0.1:{port}/healthz"),
        env=env,
        cwd=ROOT,
    )


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
