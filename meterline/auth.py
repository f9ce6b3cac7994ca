"""API-key authentication for the HTTP services, cached so the hot path skips Postgres.

A revoked key keeps working for at most `ttl` seconds (30 s by default), the promise the
services make; unknown keys are cached too (shorter). Caching refusals alone would not stop a
flood of *different* bad keys, each one a lookup of its secret: so a key is looked up only if it
has the form keys are made in and its id is one of the live key ids this process knows
(`KeyIds`); any other key is refused without a query, and the ids are read again at most once
a second, so bad keys cost the database at most one cheap query a second per process.
"""

from __future__ import annotations

import re
import threading

from meterline.clock import Clock, SystemClock
from meterline.errors import Forbidden, Unauthorized
from meterline.tenants import Principal, TenantRepository
from meterline.ttlmap import TtlMap

KEY_FORM = re.compile(r"mlk_(key_[0-9a-f]{16})_[A-Za-z0-9_-]{43}")
"""The form of every key `meterline.tenants.model.new_key` makes; group 1 is the key's id."""


class KeyIds:
    """The ids of live keys, as this process last read them. An id not among them makes
    the set be read again, at most once per `refresh_ms`, so a key created since works at
    once or within that time; between reads, unknown ids are answered from memory."""

    def __init__(self, repo: TenantRepository, clock: Clock, refresh_ms: int = 1000) -> None:
        self._repo, self._clock, self._refresh_ms = repo, clock, refresh_ms
        self._ids: set[str] = set()
        self._read_at = -refresh_ms
        self._lock = threading.Lock()

    def may_be_live(self, key_id: str) -> bool:
        if key_id in self._ids:
            return True
        with self._lock:
            now = self._clock.now_ms()
            if key_id not in self._ids and now - self._read_at >= self._refresh_ms:
                self._ids, self._read_at = self._repo.live_key_ids(), now
        return key_id in self._ids


class Authenticator:
    def __init__(
        self,
        repo: TenantRepository,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        clock: Clock | None = None,
        max_entries: int = 100_000,
    ) -> None:
        self._repo = repo
        self._negative_ttl_ms = int(negative_ttl * 1000)
        self._clock = clock or SystemClock()
        self._cache: TtlMap[str, Principal | None] = TtlMap(
            int(ttl * 1000), max_entries=max_entries, clock=self._clock.now_ms
        )
        self._entries = self._cache.entries
        self._lock = threading.Lock()
        self._ids = KeyIds(repo, self._clock)

    def known(self, authorization: str | None) -> Principal:
        """The principal behind a live key, whatever its scopes; Unauthorized (401) for a
        missing, malformed, unknown or revoked key."""
        found = self._lookup(_bearer(authorization))
        if found is None:
            raise Unauthorized("unknown or revoked API key")
        return found

    def principal(self, authorization: str | None, scope: str) -> Principal:
        """The principal behind an `Authorization: Bearer` header that holds `scope`.

        Raises Unauthorized (401) for a missing, malformed, unknown or revoked key and
        Forbidden (403) for a live key without the scope.
        """
        key = _bearer(authorization)
        found = self._lookup(key)
        if found is None:
            raise Unauthorized("unknown or revoked API key")
        if scope not in found.scopes:
            raise Forbidden(f"this key lacks the {scope!r} scope")
        return found

    def _lookup(self, key: str) -> Principal | None:
        now = self._clock.now_ms()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        form = KEY_FORM.fullmatch(key)
        live = form is not None and self._ids.may_be_live(form[1])
        found = self._repo.authenticate(key) if live else None
        with self._lock:  # an unknown key is kept the shorter, negative TTL
            self._cache.put(key, found, None if found else self._negative_ttl_ms, now)
        return found


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header (expected `Bearer <api key>`)")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip() or len(key) > 256:
        raise Unauthorized("malformed Authorization header (expected `Bearer <api key>`)")
    return key.strip()
