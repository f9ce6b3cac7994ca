"""The Stripe gateway's Postgres repositories: synced Stripe objects and webhook event ids.

`stripe_objects` maps each catalog object (meter, product, price) to its Stripe id;
`stripe_webhook_events` holds each webhook event id once, `stripe_webhook_rejects` the refused
bodies (see webhook_events.py for the contract both stores share with their memory versions).
"""

from __future__ import annotations

import hashlib

from psycopg_pool import ConnectionPool

from meterline.stripe.catalog_sync import StripeObject, StripeObjectRepository
from meterline.stripe.webhook_events import (
    KEPT_BYTES,
    RejectedWebhook,
    WebhookEventStore,
    printable,
)


class PostgresStripeObjectRepository(StripeObjectRepository):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def get(self, tenant_id: int, kind: str, key: str) -> StripeObject | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT kind, key, stripe_id, event_name FROM stripe_objects "
                "WHERE tenant_id = %s AND kind = %s AND key = %s",
                (tenant_id, kind, key),
            ).fetchone()
        return None if row is None else StripeObject(*row)

    def put(self, tenant_id: int, obj: StripeObject) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO stripe_objects (tenant_id, kind, key, stripe_id, event_name) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, kind, key) DO UPDATE SET "
                "stripe_id = EXCLUDED.stripe_id, event_name = EXCLUDED.event_name, "
                "updated_at = now()",
                (tenant_id, obj.kind, obj.key, obj.stripe_id, obj.event_name),
            )

    def all(self, tenant_id: int) -> list[StripeObject]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT kind, key, stripe_id, event_name FROM stripe_objects "
                "WHERE tenant_id = %s ORDER BY kind, key",
                (tenant_id,),
            ).fetchall()
        return [StripeObject(*r) for r in rows]

    def by_stripe_id(self, stripe_id: str) -> tuple[int, StripeObject] | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT tenant_id, kind, key, stripe_id, event_name FROM stripe_objects "
                "WHERE stripe_id = %s LIMIT 1",
                (stripe_id,),
            ).fetchone()
        return None if row is None else (row[0], StripeObject(*row[1:]))


class PostgresWebhookEventStore(WebhookEventStore):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def record(self, event_id: str, type_: str, created: int) -> bool:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO stripe_webhook_events (event_id, type, created) VALUES (%s, %s, %s) "
                "ON CONFLICT (event_id) DO NOTHING",
                (event_id, type_, created),
            )
            row = conn.execute(
                "SELECT processed_at FROM stripe_webhook_events WHERE event_id = %s", (event_id,)
            ).fetchone()
        return row is None or row[0] is None

    def processed(self, event_id: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE stripe_webhook_events SET processed_at = now() WHERE event_id = %s",
                (event_id,),
            )

    def reject(self, payload: bytes, event_id: str | None, reason: str) -> None:
        digest = hashlib.sha256(payload).digest()
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO stripe_webhook_rejects (body_sha256, event_id, size, body, reason) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (body_sha256) DO UPDATE SET "
                "attempts = stripe_webhook_rejects.attempts + 1, last_seen = now(), "
                "reason = EXCLUDED.reason",
                (digest, event_id, len(payload), payload[:KEPT_BYTES], printable(reason)),
            )

    def rejected(self, limit: int = 100) -> list[RejectedWebhook]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT encode(body_sha256, 'hex'), event_id, size, reason, attempts, "
                "first_seen, last_seen FROM stripe_webhook_rejects "
                "ORDER BY last_seen DESC LIMIT %s",
                (limit,),
            ).fetchall()
        return [RejectedWebhook(*r) for r in rows]
