"""Fixtures: the entitlements API served on a loopback port against the real backing services
and the Stripe emulator, with a tenant, its keys and the example catalog synced to Stripe."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from entitlements_api.app import create_server
from entitlements_api.fastpath import CheckFastPath
from entitlements_api.protocol import protocol_for
from entitlements_api.settings import EntitlementsSettings
from entitlements_api.wiring import Dependencies, build
from ingest.app import create_server as create_ingest
from ingest.service import Sections
from ingest.service import build as build_ingest
from ingest.settings import IngestSettings
from meterline.catalog import Catalog
from meterline.clock import from_ms
from meterline.dunning import DunningSettings
from meterline.postgres import open_pool
from meterline.redis import connect as redis_connect
from meterline.settings import DatabaseSettings, KafkaSettings, RedisSettings, load_settings
from meterline.stripe import CatalogSync, PostgresStripeObjectRepository, apply_and_sync
from meterline.tenants import PostgresTenantRepository
from meterline.view import RedisUsageView
from tests.entitlements.catalogs import example_catalog
from tests.fixtures.stripe import StripeEmulatorHandle

WEBHOOK_SECRET = "whsec_meterline_test"


class OffsetClock:
    """Real time plus an offset that tests move (like the emulator's clock)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def now(self):  # type: ignore[no-untyped-def]
        return from_ms(self.now_ms())

    def follow(self, control: Any) -> None:
        """Match the emulator's clock."""
        self.offset_ms = max(0, int(control.now() * 1000) - time.time_ns() // 1_000_000)

    def advance(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


@dataclass
class Api:
    url: str
    deps: Dependencies
    clock: OffsetClock
    tenant_id: int
    keys: dict[str, str]
    stripe: StripeEmulatorHandle
    env: dict[str, str] = field(default_factory=dict)

    def client(self, scope: str = "read") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[scope]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def price(self, plan: str) -> str:
        found = self.deps.stripe_objects.get(self.tenant_id, "price", plan)
        assert found is not None
        return found.stripe_id

    def customer(self, customer: str) -> str:
        """Create the customer and its Stripe customer; returns the Stripe id."""
        with self.client("admin") as http:
            http.post("/v1/admin/customers", json={"id": customer}).raise_for_status()
            answer = http.post(f"/v1/admin/customers/{customer}/stripe")
            answer.raise_for_status()
            return str(answer.json()["stripe_customer_id"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """uvicorn in a thread on a free loopback port; a `CheckFastPath` (`create_server`) is
    served as `python -m entitlements_api` serves it, with `protocol_for` (cached checks
    answered inline)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        http = protocol_for(app) if isinstance(app, CheckFastPath) else "httptools"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_keep_alive=60,
            access_log=False,  # as served: an access log would take every request through ASGI
            http=http,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the entitlements API did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def make_tenant(
    pg_conninfo: str, catalog: Catalog, stripe: StripeEmulatorHandle
) -> tuple[int, dict[str, str]]:
    with open_pool(pg_conninfo, max_size=2) as pool:
        tenants = PostgresTenantRepository(pool)
        tenant_id = tenants.create_tenant("acme").id
        keys = {s: tenants.create_key("acme", [s])[1] for s in ("read", "ingest", "admin")}
        keys["app"] = tenants.create_key("acme", ["read", "ingest"])[1]
        sync = CatalogSync(stripe.client(), PostgresStripeObjectRepository(pool))
        apply_and_sync(_catalogs(pool), sync, tenant_id, catalog)
    return tenant_id, keys


def _catalogs(pool: Any) -> Any:
    from meterline.catalog import PostgresCatalogRepository

    return PostgresCatalogRepository(pool)


@pytest.fixture
def api_env(service_env: dict[str, str], stripe_emulator: StripeEmulatorHandle) -> dict[str, str]:
    return {
        **service_env,
        "METERLINE_STRIPE_API_BASE": stripe_emulator.url,
        "METERLINE_STRIPE_API_KEY": stripe_emulator.api_key,
        "METERLINE_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "METERLINE_STRIPE_MAX_NETWORK_RETRIES": "0",
    }


def mark_view_ready(env: dict[str, str]) -> None:
    """The view of an empty database is exact once marked ready, as the aggregator's rebuild
    marks it in a running stack; until then every decision falls back to Postgres."""
    redis_settings = load_settings(env).redis
    view = RedisUsageView(redis_connect(redis_settings.url), redis_settings.key_prefix)
    token = view.begin_rebuild(30)
    assert token is not None and view.finish_rebuild(token, {})


def serve_api(
    env: dict[str, str],
    stripe: StripeEmulatorHandle,
    catalog: Catalog,
    dunning: DunningSettings | None = None,
    **own: Any,
) -> Iterator[Api]:
    tenant_id, keys = make_tenant(env["METERLINE_DATABASE_URL"], catalog, stripe)
    clock = OffsetClock()
    settings = EntitlementsSettings(**{"decision_cache_ttl": 0.0, **own})
    deps = build(load_settings(env), settings, clock, dunning)
    mark_view_ready(env)
    with ServerThread(create_server(deps)) as url:
        yield Api(url, deps, clock, tenant_id, keys, stripe, env)


@pytest.fixture
def api(api_env: dict[str, str], stripe_emulator: StripeEmulatorHandle) -> Iterator[Api]:
    """The API with tenant `acme` on the example catalog (Free / Basic / Power), synced to the
    emulator; the decision cache is off so every check reads the usage."""
    yield from serve_api(api_env, stripe_emulator, example_catalog())


@pytest.fixture
def ingest(api: Api) -> Iterator[httpx.Client]:
    """The ingest app (in process) on the API's Postgres, Redis and topic, with its ingest key."""
    env = api.env
    sections = Sections(
        IngestSettings(),
        KafkaSettings(
            bootstrap=env["METERLINE_KAFKA_BOOTSTRAP"], topic=env["METERLINE_KAFKA_TOPIC"]
        ),
        DatabaseSettings(url=env["METERLINE_DATABASE_URL"]),
        RedisSettings(url=env["METERLINE_REDIS_URL"]),
    )
    with TestClient(create_ingest(build_ingest(sections))) as client:
        client.headers["Authorization"] = f"Bearer {api.keys['ingest']}"
        yield client
