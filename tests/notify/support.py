"""Webhook test kit: a real HTTP receiver that records and verifies, a tenant with endpoints,
and a dispatcher with a short retry schedule."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from psycopg_pool import ConnectionPool
from standardwebhooks.webhooks import Webhook

from meterline.notify.dispatcher import Dispatcher
from meterline.notify.events import Notification
from meterline.notify.metrics import WebhookMetrics
from meterline.notify.outbox import publish
from meterline.notify.postgres.endpoints import EndpointChange, EndpointStore
from meterline.notify.settings import WebhookSettings
from meterline.postgres import open_pool

FAST = (0.05, 0.05, 0.05, 0.05)  # four retries, fifty milliseconds apart


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def msg_id(self) -> str:
        return self.headers["webhook-id"]

    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """An HTTP server on loopback. `answer(request) -> (status, headers)` decides each reply
    (default 204); `delay` makes each reply slow; every request is kept in `requests`."""

    answer: Callable[[Received], tuple[int, dict[str, str]]] = lambda _r: (204, {})
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                got = Received({k.lower(): v for k, v in self.headers.items()},
                               self.rfile.read(length), time.time())  # fmt: skip
                receiver.requests.append(got)
                receiver.arrived.set()
                time.sleep(receiver.delay)
                status, extra = receiver.answer(got)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every request, verified with the official Standard Webhooks library."""
        return [Webhook(secret).verify(r.body, r.headers) for r in self.requests]


@dataclass
class Setup:
    pool: ConnectionPool
    tenant_id: int
    endpoints: EndpointStore
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    metrics: WebhookMetrics | None = None

    def endpoint(self, url: str, types: list[str] | None = None) -> tuple[int, str]:
        created, secret = self.endpoints.create(self.tenant_id, EndpointChange(url, None, types))
        return created.id, secret

    def dispatcher(self, **overrides: Any) -> Dispatcher:
        values: dict[str, Any] = {"retry_delays_s": FAST, "poll_s": 0.02, "timeout_s": 5,
                                  "allow_private_urls": True, **overrides}  # fmt: skip
        settings = WebhookSettings.model_construct(**values)
        self.metrics = self.metrics or WebhookMetrics(self.registry)
        return Dispatcher(self.pool, settings, self.metrics)

    def publish(self, customer: str, n: int, kind: str = "subscription.changed") -> str:
        data = {"n": n, "key": f"{customer}-{n}"}
        notification = Notification(self.tenant_id, kind, datetime.now(UTC), data,
                                    customer=customer, key=f"{customer}-{n}")  # fmt: skip
        with self.pool.connection() as conn:
            publish(conn, notification)
        return notification.msg_id

    def statuses(self) -> dict[str, int]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT status, count(*) FROM webhook_deliveries GROUP BY 1")
            return dict(rows.fetchall())


def make_setup(conninfo: str, name: str = "acme", pool_size: int = 6) -> Setup:
    pool = open_pool(conninfo, max_size=pool_size)
    with pool.connection() as conn:
        row = conn.execute("INSERT INTO tenants (name) VALUES (%s) RETURNING id", (name,))
        tenant_id = row.fetchone()[0]  # type: ignore[index]
    return Setup(pool, tenant_id, EndpointStore(pool, allow_private=True))


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
