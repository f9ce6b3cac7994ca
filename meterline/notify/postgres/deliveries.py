"""Deliveries: the dispatcher's claim and settle, and the per-endpoint delivery log.

A delivery is one message for one endpoint. `claim(conn)` locks one that is due: pending, its
endpoint enabled, `next_attempt_at` passed, and the oldest pending one of its (endpoint,
ordering key) — so one customer's messages reach an endpoint in the order they were written, and
a failing one holds back only that customer's later messages. The lock (FOR UPDATE SKIP LOCKED)
is held while the request is in flight and released by the commit that settles the attempt: a
sender that dies mid-request loses its connection, Postgres ends the transaction, and the same
delivery is claimed again — at least once, with the same `webhook-id`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from meterline.errors import FieldError, NotFound, ValidationFailed
from meterline.notify.events import iso

STATUSES = ("pending", "succeeded", "failed")

_CLAIM = """
SELECT d.id, d.attempts, m.msg_id, m.body, e.id, e.url
FROM webhook_deliveries d
JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
JOIN webhook_messages m ON m.id = d.message_id
WHERE d.status = 'pending' AND d.next_attempt_at <= now()
  AND NOT EXISTS (
    SELECT 1 FROM webhook_deliveries p
    WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
      AND p.status = 'pending' AND p.message_id < d.message_id)
ORDER BY d.next_attempt_at
LIMIT 1
FOR UPDATE OF d SKIP LOCKED
"""
_SECRETS = """
SELECT secret FROM webhook_secrets
WHERE endpoint_id = %s AND (expires_at IS NULL OR expires_at > now()) ORDER BY id DESC
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: int
    attempts: int  # made before this one
    msg_id: str
    body: bytes
    endpoint_id: int
    url: str
    secrets: list[str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt did. `retry_in` None on failure means the schedule is over."""

    started_at: datetime
    latency_ms: float
    succeeded: bool
    status_code: int | None = None
    error: str | None = None
    retry_in: float | None = None
    gone: bool = False  # 410: the receiver asks to be disabled


def claim(conn: Any) -> Claimed | None:
    """Lock one due delivery on `conn` (inside a transaction); None when none is due."""
    row = conn.execute(_CLAIM).fetchone()
    if row is None:
        return None
    secrets = [r[0] for r in conn.execute(_SECRETS, (row[4],)).fetchall()]
    return Claimed(row[0], row[1], row[2], bytes(row[3]), row[4], row[5], secrets)


def settle(conn: Any, job: Claimed, outcome: Outcome) -> None:
    """Log the attempt and move the delivery on (same transaction as the claim)."""
    status = "succeeded" if outcome.succeeded else ("pending" if outcome.retry_in is not None
                                                    else "failed")  # fmt: skip
    conn.execute(
        "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, latency_ms, "
        "status_code, error, succeeded) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (job.delivery_id, job.attempts + 1, outcome.started_at, outcome.latency_ms,
         outcome.status_code, outcome.error, outcome.succeeded),
    )  # fmt: skip
    conn.execute(
        "UPDATE webhook_deliveries SET status = %s, attempts = attempts + 1, "
        "next_attempt_at = now() + make_interval(secs => %s), last_status_code = %s, "
        "last_error = %s, updated_at = now() WHERE id = %s",
        (status, outcome.retry_in or 0, outcome.status_code, outcome.error, job.delivery_id),
    )


def note_endpoint(
    conn: Any, endpoint_id: int, succeeded: bool, gone: bool, after: int, span_s: float
) -> bool:
    """Update the endpoint's failure streak; disable it after `after` failures in a row that
    span `span_s` seconds, or at once on 410. True when this call disabled it."""
    if succeeded:
        conn.execute(
            "UPDATE webhook_endpoints SET failure_streak = 0, failing_since = NULL "
            "WHERE id = %s AND failure_streak > 0",
            (endpoint_id,),
        )
        return False
    row = conn.execute(
        "UPDATE webhook_endpoints SET failure_streak = failure_streak + 1, "
        "failing_since = coalesce(failing_since, now()) WHERE id = %s "
        "RETURNING failure_streak, extract(epoch FROM now() - failing_since), enabled",
        (endpoint_id,),
    ).fetchone()
    if row is None or not row[2]:
        return False
    if not gone and (row[0] < after or float(row[1]) < span_s):
        return False
    reason = "the receiver answered 410 Gone" if gone else f"{row[0]} failed attempts in a row"
    conn.execute(
        "UPDATE webhook_endpoints SET enabled = false, disabled_reason = %s, updated_at = now() "
        "WHERE id = %s",
        (reason, endpoint_id),
    )
    return True


class DeliveryLog:
    """Deliveries of one endpoint with their attempts, and manual replay."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def deliveries(
        self, tenant_id: int, endpoint_id: int, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise ValidationFailed([FieldError("status", f"must be one of {', '.join(STATUSES)}")])
        with self._pool.connection() as conn:
            _own(conn, tenant_id, endpoint_id)
            rows = conn.execute(_DELIVERIES, (endpoint_id, status, status, limit)).fetchall()
            attempts = _attempts(conn, [r[0] for r in rows])
        return [_delivery(r, attempts.get(r[0], [])) for r in rows]

    def replay(self, tenant_id: int, endpoint_id: int, msg_id: str) -> dict[str, Any]:
        """Send `msg_id` to the endpoint again (a fresh schedule), whatever its delivery's
        status; also a message written before the endpoint existed, if it is the tenant's."""
        with self._pool.connection() as conn:
            _own(conn, tenant_id, endpoint_id)
            row = conn.execute(_REPLAY, (endpoint_id, msg_id, tenant_id)).fetchone()
        if row is None:
            raise NotFound(f"no message {msg_id!r}")
        return {"delivery_id": row[0], "msg_id": msg_id, "status": "pending"}


def _own(conn: Any, tenant_id: int, endpoint_id: int) -> None:
    row = conn.execute(
        "SELECT 1 FROM webhook_endpoints WHERE tenant_id = %s AND id = %s",
        (tenant_id, endpoint_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")


_DELIVERIES = """
SELECT d.id, m.msg_id, m.event_type, m.ordering_key, d.status, d.attempts, d.next_attempt_at,
       d.last_status_code, d.last_error, m.created_at
FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id
WHERE d.endpoint_id = %s AND (%s::text IS NULL OR d.status = %s)
ORDER BY d.id DESC LIMIT %s
"""
_REPLAY = """
INSERT INTO webhook_deliveries (message_id, endpoint_id, ordering_key)
SELECT m.id, %s, m.ordering_key FROM webhook_messages m WHERE m.msg_id = %s AND m.tenant_id = %s
ON CONFLICT (message_id, endpoint_id) DO UPDATE SET status = 'pending', attempts = 0,
    next_attempt_at = now(), updated_at = now()
RETURNING id
"""


def _attempts(conn: Any, ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    rows = conn.execute(
        "SELECT delivery_id, attempt, started_at, latency_ms, status_code, error, succeeded "
        "FROM webhook_attempts WHERE delivery_id = ANY(%s) ORDER BY id",
        (list(ids),),
    ).fetchall()
    out: dict[int, list[dict[str, Any]]] = {}
    for d, n, at, ms, code, err, ok in rows:
        entry = {"attempt": n, "started_at": iso(at), "latency_ms": ms, "status_code": code,
                 "error": err, "succeeded": ok}  # fmt: skip
        out.setdefault(d, []).append(entry)
    return out


def _delivery(row: Sequence[Any], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("id", "msg_id", "event_type", "customer", "status", "attempts", "next_attempt_at",
            "last_status_code", "last_error", "created_at")  # fmt: skip
    out = dict(zip(keys, row, strict=True))
    out["next_attempt_at"] = iso(out["next_attempt_at"]) if out["status"] == "pending" else None
    out["created_at"] = iso(out["created_at"])
    out["customer"] = out["customer"] or None
    out["attempt_log"] = attempts
    return out
