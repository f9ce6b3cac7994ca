"""Server-side sessions of the /finance pages, stored in Postgres (`finance_sessions`).

A session id is 256 random bits, handed to the browser once (its cookie) and stored only as
its SHA-256, so neither the table nor a log of it can sign anyone in, and the cookie holds
nothing of the API key. A session ends at logout, after `idle_s` without a request, after
`max_s` in all, or as soon as its API key is revoked: every lookup joins the key and acts
with the scopes the key holds now, in one statement that also records the request.

Each session has its own CSRF token (a synchronizer token, derived from the session id by
HMAC, so nothing more is stored): forms carry it, and a post without the token of the
session that sent it changes nothing.

Defaults: `METERLINE_REPORTER_SESSION_IDLE_S` 1 h, `_SESSION_MAX_S` 12 h (table
`finance_sessions`, migration 0011). There is no auth cache in between: a lookup is one
`UPDATE ... RETURNING` joining the key and its tenant. Rows are deleted a week after they
expire (`KEEP_ENDED`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from psycopg_pool import ConnectionPool

from meterline.clock import Clock
from meterline.tenants import Principal

KEEP_ENDED = timedelta(days=7)
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


@dataclass(frozen=True, slots=True)
class Session:
    """A live session: who it acts for (the key's current scopes) and its CSRF token."""

    principal: Principal
    csrf_token: str

    def allows(self, scope: str) -> bool:
        """`read` pages are open to `admin` keys too, as in the API (reporter/auth.py)."""
        scopes = self.principal.scopes
        return scope in scopes or (scope == "read" and "admin" in scopes)


class SessionStore:
    """The repository of finance sessions. Every method is one short Postgres statement."""

    def __init__(self, pool: ConnectionPool, clock: Clock, idle_s: int, max_s: int) -> None:
        self._pool = pool
        self._clock = clock
        self._idle_s = idle_s
        self._max = timedelta(seconds=max_s)

    def start(self, principal: Principal) -> str:
        """A new session for `principal`'s key; returns the session id for the cookie.

        Sessions that expired more than a week ago are deleted on the way.
        """
        session_id = secrets.token_urlsafe(32)
        now = self._clock.now()
        row = {"id_hash": _digest(session_id), "tenant_id": principal.tenant_id, "now": now}
        row.update(key_id=principal.key_id, expires=now + self._max)
        with self._pool.connection() as conn:
            conn.execute(_PURGE, (now - KEEP_ENDED,))
            conn.execute(_START, row)
        return session_id

    def resolve(self, session_id: str | None) -> Session | None:
        """The live session behind a cookie value, or None (unknown, ended, expired, revoked).

        A hit extends the idle deadline, never the absolute one.
        """
        if not session_id or len(session_id) > 64:
            return None
        args = {"id_hash": _digest(session_id), "now": self._clock.now(), "idle_s": self._idle_s}
        with self._pool.connection() as conn:
            row = conn.execute(_RESOLVE, args).fetchone()
        if row is None:
            return None
        principal = Principal(row[0], row[1], row[2], frozenset(row[3]))
        return Session(principal, csrf_token(session_id))

    def end(self, session_id: str | None) -> None:
        """End a session (logout); unknown or already ended ids are ignored."""
        if session_id and len(session_id) <= 64:
            with self._pool.connection() as conn:
                conn.execute(_END, (self._clock.now(), _digest(session_id)))


def csrf_token(session_id: str) -> str:
    """The session's form token: an HMAC keyed by the session id, revealing nothing of it."""
    return hmac.new(session_id.encode(), b"meterline-finance-csrf", hashlib.sha256).hexdigest()


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()
