"""The tenants' Postgres repository: `tenants` and `api_keys` (only each key's hash is stored)."""

from __future__ import annotations

import psycopg
from psycopg_pool import ConnectionPool

from meterline.errors import Conflict, NotFound
from meterline.tenants.model import (
    KeyInfo,
    Principal,
    Tenant,
    TenantRepository,
    check_scopes,
    check_tenant_name,
    hash_secret,
    new_key,
)


class PostgresTenantRepository(TenantRepository):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def create_tenant(self, name: str) -> Tenant:
        check_tenant_name(name)
        with self._pool.connection() as conn:
            try:
                row = conn.execute(
                    "INSERT INTO tenants (name) VALUES (%s) RETURNING id", (name,)
                ).fetchone()
            except psycopg.errors.UniqueViolation:
                raise Conflict(f"tenant {name!r} already exists") from None
        assert row is not None
        return Tenant(row[0], name)

    def get_tenant(self, name: str) -> Tenant:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT id FROM tenants WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no tenant {name!r}")
        return Tenant(row[0], name)

    def create_key(self, tenant: str, scopes: list[str]) -> tuple[KeyInfo, str]:
        checked = check_scopes(scopes)
        t = self.get_tenant(tenant)
        key_id, key = new_key()
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO api_keys (id, tenant_id, secret_hash, scopes) VALUES (%s, %s, %s, %s) "
                "RETURNING created_at",
                (key_id, t.id, hash_secret(key), list(checked)),
            ).fetchone()
        assert row is not None
        return KeyInfo(key_id, tenant, checked, row[0]), key

    def revoke_key(self, key_id: str) -> None:
        with self._pool.connection() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s",
                (key_id,),
            )
        if cur.rowcount == 0:
            raise NotFound(f"no key {key_id!r}")

    def list_keys(self, tenant: str) -> list[KeyInfo]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT k.id, k.scopes, k.created_at, k.revoked_at FROM api_keys k "
                "JOIN tenants t ON t.id = k.tenant_id WHERE t.name = %s ORDER BY k.created_at",
                (tenant,),
            ).fetchall()
        return [KeyInfo(r[0], tenant, tuple(r[1]), r[2], r[3]) for r in rows]

    def authenticate(self, key: str) -> Principal | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT k.tenant_id, t.name, k.id, k.scopes FROM api_keys k "
                "JOIN tenants t ON t.id = k.tenant_id "
                "WHERE k.secret_hash = %s AND k.revoked_at IS NULL",
                (hash_secret(key),),
            ).fetchone()
        return None if row is None else Principal(row[0], row[1], row[2], frozenset(row[3]))

    def live_key_ids(self) -> set[str]:
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT id FROM api_keys WHERE revoked_at IS NULL").fetchall()
        return {r[0] for r in rows}
