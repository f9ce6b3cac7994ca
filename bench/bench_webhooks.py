"""Outbound webhooks benchmark: how fast the outbox takes messages, and how fast the running
reporter's dispatcher delivers them to a receiver on loopback. Prints figures; asserts nothing.

Set-up (not timed): a fresh tenant with one endpoint pointing at a local HTTP server that
answers 204 at once. Timed: writing `messages` notifications for 500 customers into the outbox
(100 per transaction, as callers write them inside their own), then the time until the
reporter's dispatcher (4 workers, the default) has delivered every one. The figure is bounded
by one HTTP round trip and one small transaction per delivery, per worker.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.harness import BenchContext, Figure
from meterline.notify.events import Notification
from meterline.notify.outbox import publish
from meterline.notify.postgres.endpoints import EndpointChange, EndpointStore
from meterline.postgres import open_pool

CUSTOMERS = 500


class _Quiet(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def run(ctx: BenchContext) -> list[Figure]:
    messages = ctx.scale(5_000)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pool = open_pool(ctx.urls["postgres"], max_size=2)
    try:
        tenant_id = _tenant(pool)
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        EndpointStore(pool, allow_private=True).create(tenant_id, EndpointChange(url))
        write_s = _write(pool, tenant_id, messages)
        deliver_s = _delivered(pool, tenant_id, messages)
    finally:
        pool.close()
        server.shutdown()
    note = f"{messages} messages, {CUSTOMERS} customers, one endpoint on loopback"
    return [
        Figure("webhooks.outbox_write_rate", messages / write_s, "msg/s", note=note),
        Figure(
            "webhooks.delivery_rate",
            messages / deliver_s,
            "msg/s",
            note="the reporter's dispatcher, signed, in order per customer",
        ),
    ]


def _tenant(pool: Any) -> int:
    with pool.connection() as conn:
        row = conn.execute(
            "INSERT INTO tenants (name) VALUES (%s) RETURNING id",
            (f"hooks-{secrets.token_hex(4)}",),
        ).fetchone()
    return int(row[0])


def _write(pool: Any, tenant_id: int, messages: int) -> float:
    started = time.perf_counter()
    for first in range(0, messages, 100):
        with pool.connection() as conn, conn.transaction():
            for n in range(first, min(first + 100, messages)):
                customer = f"cust_{n % CUSTOMERS}"
                publish(conn, Notification(tenant_id, "subscription.changed", datetime.now(UTC),
                                           {"n": n}, customer, key=str(n)))  # fmt: skip
    return time.perf_counter() - started


def _delivered(pool: Any, tenant_id: int, messages: int, limit_s: float = 600) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        with pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM webhook_deliveries d JOIN webhook_messages m "
                "ON m.id = d.message_id WHERE m.tenant_id = %s AND d.status = 'succeeded'",
                (tenant_id,),
            ).fetchone()
        if row and row[0] >= messages:
            break
        time.sleep(0.05)
    return time.perf_counter() - started
