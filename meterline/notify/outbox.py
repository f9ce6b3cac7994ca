"""Writing a notification into the outbox, in the caller's transaction.

`publish(conn, notification)` inserts the message and one pending delivery per endpoint of the
tenant whose filter takes its type, in one statement, on the connection the caller is already
writing its change with: the change and its announcement commit together or not at all, and the
dispatcher (`meterline.notify.dispatcher`) delivers it at least once from then on. An unknown
tenant writes nothing and never fails the caller (the aggregator calls this for dead letters
whose key may be anything). Endpoints disabled at the time get the delivery too; it waits until
they are enabled again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meterline.notify.events import Notification

_PUBLISH = """
WITH m AS (
    INSERT INTO webhook_messages (msg_id, tenant_id, event_type, ordering_key, body)
    SELECT %(msg_id)s, t.id, %(type)s, %(ordering_key)s, %(body)s FROM tenants t
    WHERE t.id = %(tenant)s
    ON CONFLICT (msg_id) DO NOTHING
    RETURNING id
)
INSERT INTO webhook_deliveries (message_id, endpoint_id, ordering_key)
SELECT m.id, e.id, %(ordering_key)s FROM m
JOIN webhook_endpoints e ON e.tenant_id = %(tenant)s
    AND (e.event_types = '{}' OR %(type)s = ANY (e.event_types))
"""


def publish(conn: Any, notification: Notification) -> None:
    """Queue `notification` on `conn` (a psycopg connection inside the caller's transaction)."""
    conn.execute(_PUBLISH, _params(notification))


def publish_many(conn: Any, notifications: Sequence[Notification]) -> None:
    """`publish` of each, in order, in one pipelined round trip (psycopg's `executemany`)."""
    if notifications:
        with conn.cursor() as cur:
            cur.executemany(_PUBLISH, [_params(n) for n in notifications])


def _params(notification: Notification) -> dict[str, Any]:
    return {
        "msg_id": notification.msg_id,
        "type": notification.type,
        "ordering_key": notification.ordering_key,
        "body": notification.body(),
        "tenant": notification.tenant_id,
    }
