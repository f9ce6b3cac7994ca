"""/finance sessions in Postgres (`finance_sessions`, by the SHA-256 of their id): the rows
`reporter/sessions.py` keeps. Every method is one short statement; a lookup joins the key and
its tenant, so a revoked key ends its sessions at once."""

from __future__ import annotations

from datetime import datetime

from meterline.postgres import Pool
from meterline.tenants import Principal
from reporter.sessions import KEEP_ENDED

_RESOLVE = """
UPDATE finance_sessions s SET last_seen_at = %(now)s
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE s.id_hash = %(id_hash)s AND k.id = s.key_id AND k.tenant_id = s.tenant_id
  AND k.revoked_at IS NULL AND s.ended_at IS NULL AND s.expires_at > %(now)s
  AND s.last_seen_at > %(now)s - make_interval(secs => %(idle_s)s)
RETURNING s.tenant_id, t.name, k.id, k.scopes"""
_START = """
INSERT INTO finance_sessions (id_hash, tenant_id, key_id, created_at, expires_at, last_seen_at)
VALUES (%(id_hash)s, %(tenant_id)s, %(key_id)s, %(now)s, %(expires)s, %(now)s)"""
_PURGE = "DELETE FROM finance_sessions WHERE expires_at < %s"
_END = "UPDATE finance_sessions SET ended_at = %s WHERE id_hash = %s AND ended_at IS NULL"


class PostgresSessionRows:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def start(self, id_hash: bytes, principal: Principal, now: datetime, expires: datetime) -> None:
        row = {"id_hash": id_hash, "tenant_id": principal.tenant_id, "key_id": principal.key_id,
               "now": now, "expires": expires}  # fmt: skip
        with self._pool.connection() as conn:
            conn.execute(_PURGE, (now - KEEP_ENDED,))
            conn.execute(_START, row)

    def resolve(self, id_hash: bytes, now: datetime, idle_s: int) -> Principal | None:
        args = {"id_hash": id_hash, "now": now, "idle_s": idle_s}
        with self._pool.connection() as conn:
            row = conn.execute(_RESOLVE, args).fetchone()
        return None if row is None else Principal(row[0], row[1], row[2], frozenset(row[3]))

    def end(self, id_hash: bytes, now: datetime) -> None:
        with self._pool.connection() as conn:
            conn.execute(_END, (now, id_hash))
