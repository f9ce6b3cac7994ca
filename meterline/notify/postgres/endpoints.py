"""Webhook endpoints of a tenant and their secrets: the repository the admin API uses.

Every method takes the tenant id and touches only that tenant's rows (an endpoint of another
tenant is NotFound). Inputs are checked here, every error at once with its field: the URL
(`meterline.notify.urls`), the event types (the closed list in `meterline.notify.events`) and
the rotation overlap. A secret is shown when the endpoint is created and when it is rotated;
rotation keeps the previous secrets signing for `overlap_s` (default a day), so receivers can
switch without losing a delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from meterline.errors import FieldError, NotFound, ValidationFailed
from meterline.notify.events import EVENT_TYPES, iso
from meterline.notify.signing import new_secret
from meterline.notify.urls import url_problem

DEFAULT_OVERLAP_S = 24 * 3600
MAX_OVERLAP_S = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: int
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    failure_streak: int
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["created_at"], out["updated_at"] = iso(self.created_at), iso(self.updated_at)
        return out


_COLS = ", ".join(f.name for f in fields(Endpoint))


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """A creation (every field but `url` optional) or an update (only the fields given)."""

    url: str | None = None
    description: str | None = None
    event_types: Sequence[str] | None = None
    enabled: bool | None = None


def check_change(change: EndpointChange, allow_private: bool) -> None:
    """ValidationFailed listing every bad field of `change`."""
    errors: list[FieldError] = []
    if change.url is not None and (problem := url_problem(change.url, allow_private)):
        errors.append(FieldError("url", problem))
    for i, kind in enumerate(change.event_types or ()):
        if kind not in EVENT_TYPES:
            known = ", ".join(EVENT_TYPES)
            errors.append(FieldError(f"event_types.{i}", f"unknown event type; one of {known}"))
    if errors:
        raise ValidationFailed(errors)


class EndpointStore:
    def __init__(self, pool: ConnectionPool, allow_private: bool = False) -> None:
        self._pool = pool
        self._allow_private = allow_private

    def create(self, tenant_id: int, change: EndpointChange) -> tuple[Endpoint, str]:
        """The new endpoint and its first secret (shown this once)."""
        if change.url is None:
            raise ValidationFailed([FieldError("url", "required")])
        check_change(change, self._allow_private)
        secret = new_secret()
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                f"INSERT INTO webhook_endpoints (tenant_id, url, description, event_types, "
                f"enabled) VALUES (%s, %s, %s, %s, %s) RETURNING {_COLS}".encode(),
                (tenant_id, change.url, change.description or "",
                 sorted(set(change.event_types or ())),
                 True if change.enabled is None else change.enabled),
            ).fetchone()  # fmt: skip
            assert row is not None
            conn.execute(
                "INSERT INTO webhook_secrets (endpoint_id, secret) VALUES (%s, %s)",
                (row[0], secret),
            )
        return Endpoint(*row), secret

    def all(self, tenant_id: int) -> list[Endpoint]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_COLS} FROM webhook_endpoints WHERE tenant_id = %s ORDER BY id".encode(),
                (tenant_id,),
            ).fetchall()
        return [Endpoint(*r) for r in rows]

    def get(self, tenant_id: int, endpoint_id: int) -> Endpoint:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {_COLS} FROM webhook_endpoints WHERE tenant_id = %s AND id = %s".encode(),
                (tenant_id, endpoint_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        return Endpoint(*row)

    def update(self, tenant_id: int, endpoint_id: int, change: EndpointChange) -> Endpoint:
        """Change the given fields; enabling an endpoint clears its failure streak."""
        check_change(change, self._allow_private)
        types = None if change.event_types is None else sorted(set(change.event_types))
        with self._pool.connection() as conn:
            row = conn.execute(
                f"UPDATE webhook_endpoints SET url = coalesce(%s, url), "
                f"description = coalesce(%s, description), "
                f"event_types = coalesce(%s::text[], event_types), "
                f"enabled = coalesce(%s::boolean, enabled), "
                f"disabled_reason = CASE WHEN %s::boolean IS NOT NULL THEN NULL "
                f"ELSE disabled_reason END, "
                f"failure_streak = CASE WHEN %s THEN 0 ELSE failure_streak END, "
                f"failing_since = CASE WHEN %s THEN NULL ELSE failing_since END, "
                f"updated_at = now() WHERE tenant_id = %s AND id = %s RETURNING {_COLS}".encode(),
                (change.url, change.description, types, change.enabled, change.enabled,
                 change.enabled is True, change.enabled is True, tenant_id, endpoint_id),
            ).fetchone()  # fmt: skip
        if row is None:
            raise NotFound(f"no webhook endpoint {endpoint_id}")
        return Endpoint(*row)

    def delete(self, tenant_id: int, endpoint_id: int) -> None:
        """Remove the endpoint with its secrets, deliveries and their log."""
        with self._pool.connection() as conn:
            cur = conn.execute(
                "DELETE FROM webhook_endpoints WHERE tenant_id = %s AND id = %s",
                (tenant_id, endpoint_id),
            )
        if cur.rowcount == 0:
            raise NotFound(f"no webhook endpoint {endpoint_id}")

    def rotate(self, tenant_id: int, endpoint_id: int, overlap_s: int = DEFAULT_OVERLAP_S) -> str:
        """A new signing secret; the live ones keep signing for `overlap_s` more seconds."""
        if not 0 <= overlap_s <= MAX_OVERLAP_S:
            raise ValidationFailed([FieldError("overlap_s", f"must be 0 to {MAX_OVERLAP_S}")])
        self.get(tenant_id, endpoint_id)
        secret = new_secret()
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE webhook_secrets SET expires_at = least(coalesce(expires_at, 'infinity'), "
                "now() + make_interval(secs => %s)) WHERE endpoint_id = %s",
                (overlap_s, endpoint_id),
            )
            conn.execute(
                "INSERT INTO webhook_secrets (endpoint_id, secret) VALUES (%s, %s)",
                (endpoint_id, secret),
            )
        return secret

    def secrets(self, tenant_id: int, endpoint_id: int) -> list[dict[str, Any]]:
        """The live secrets, newest first, with when each stops signing (null: never)."""
        self.get(tenant_id, endpoint_id)
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT secret, created_at, expires_at FROM webhook_secrets "
                "WHERE endpoint_id = %s AND (expires_at IS NULL OR expires_at > now()) "
                "ORDER BY id DESC",
                (endpoint_id,),
            ).fetchall()
        return [
            {"secret": s, "created_at": iso(c), "expires_at": iso(e) if e else None}
            for s, c, e in rows
        ]
