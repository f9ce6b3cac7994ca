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
`UPDATE ... RETURNING` joining the key and its tenant (`reporter/postgres/sessions.py`). Rows
are deleted a week after they expire (`KEEP_ENDED`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from meterline.clock import Clock
from meterline.tenants import Principal

KEEP_ENDED = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Session:
    """A live session: who it acts for (the key's current scopes) and its CSRF token."""

    principal: Principal
    csrf_token: str

    def allows(self, scope: str) -> bool:
        """`read` pages are open to `admin` keys too, as in the API (reporter/auth.py)."""
        scopes = self.principal.scopes
        return scope in scopes or (scope == "read" and "admin" in scopes)


class SessionRows(Protocol):
    """Where sessions are kept, by the SHA-256 of their id (`reporter/postgres/sessions.py`)."""

    def start(self, id_hash: bytes, principal: Principal, now: datetime, expires: datetime) -> None:
        """Store a new session; sessions that expired before `now - KEEP_ENDED` go."""

    def resolve(self, id_hash: bytes, now: datetime, idle_s: int) -> Principal | None:
        """The live session's principal with its key's current scopes, its last request set
        to `now`; None when unknown, ended, expired, idle or its key revoked."""

    def end(self, id_hash: bytes, now: datetime) -> None: ...


class SessionStore:
    """Finance sessions: ids handed out once, kept hashed in `rows`."""

    def __init__(self, rows: SessionRows, clock: Clock, idle_s: int, max_s: int) -> None:
        self._rows = rows
        self._clock = clock
        self._idle_s = idle_s
        self._max = timedelta(seconds=max_s)

    def start(self, principal: Principal) -> str:
        """A new session for `principal`'s key; returns the session id for the cookie.

        Sessions that expired more than a week ago are deleted on the way.
        """
        session_id = secrets.token_urlsafe(32)
        now = self._clock.now()
        self._rows.start(_digest(session_id), principal, now, now + self._max)
        return session_id

    def resolve(self, session_id: str | None) -> Session | None:
        """The live session behind a cookie value, or None (unknown, ended, expired, revoked).

        A hit extends the idle deadline, never the absolute one.
        """
        if not session_id or len(session_id) > 64:
            return None
        principal = self._rows.resolve(_digest(session_id), self._clock.now(), self._idle_s)
        if principal is None:
            return None
        return Session(principal, csrf_token(session_id))

    def end(self, session_id: str | None) -> None:
        """End a session (logout); unknown or already ended ids are ignored."""
        if session_id and len(session_id) <= 64:
            self._rows.end(_digest(session_id), self._clock.now())


def csrf_token(session_id: str) -> str:
    """The session's form token: an HMAC keyed by the session id, revealing nothing of it."""
    return hmac.new(session_id.encode(), b"meterline-finance-csrf", hashlib.sha256).hexdigest()


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()
