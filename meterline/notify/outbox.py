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

# `_PUBLISH` for many: arrays of each field, inserted in their order (WITH ORDINALITY).
_PUBLISH_MANY = """
WITH n AS (
    SELECT * FROM unnest(%(msg_id)b::text[], %(type)b::text[], %(ordering_key)b::text[],
                         %(body)b::bytea[], %(tenant)b::bigint[])
        WITH ORDINALITY AS n (msg_id, type, ordering_key, body, tenant, i)
), m AS (
    INSERT INTO webhook_messages (msg_id, tenant_id, event_type, ordering_key, body)
    SELECT n.msg_id, t.id, n.type, n.ordering_key, n.body FROM n JOIN tenants t ON t.id = n.tenant
    ORDER BY n.i
    ON CONFLICT (msg_id) DO NOTHING
    RETURNING id, tenant_id, event_type, ordering_key
)
INSERT INTO webhook_deliveries (message_id, endpoint_id, ordering_key)
SELECT m.id, e.id, m.ordering_key FROM m
JOIN webhook_endpoints e ON e.tenant_id = m.tenant_id
    AND (e.event_types = '{}' OR m.event_type = ANY (e.event_types))
ORDER BY m.id, e.id
"""


def publish(conn: Any, notification: Notification) -> None:
    """Queue `notification` on `conn` (a psycopg connection inside the caller's transaction)."""
    conn.execute(_PUBLISH, _params(notification))


def publish_many(conn: Any, notifications: Sequence[Notification]) -> None:
    """`publish` of each in one statement, their messages' ids in the given order (the
    dispatcher delivers a customer's messages in id order)."""
    if notifications:
        ns = notifications
        conn.execute(
            _PUBLISH_MANY,
            {
                "msg_id": [n.msg_id for n in ns],
                "type": [n.type for n in ns],
                "ordering_key": [n.ordering_key for n in ns],
                "body": [n.body() for n in ns],
                "tenant": [n.tenant_id for n in ns],
            },
        )


def _params(notification: Notification) -> dict[str, Any]:
    return {
        "msg_id": notification.msg_id,
        "type": notification.type,
        "ordering_key": notification.ordering_key,
        "body": notification.body(),
        "tenant": notification.tenant_id,
    }
