"""API-key authentication for the HTTP services, cached so the hot path skips Postgres.

A revoked key keeps working for at most `ttl` seconds (60 s by default), the promise the
services make; unknown keys are cached too (shorter) so a flood of bad keys cannot load Postgres.
"""

from __future__ import annotations

import threading

from meterline.clock import Clock, SystemClock
from meterline.errors import Forbidden, Unauthorized
from meterline.tenants import Principal, TenantRepository


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
        self._ttl_ms = int(ttl * 1000)
        self._negative_ttl_ms = int(negative_ttl * 1000)
        self._clock = clock or SystemClock()
        self._max = max_entries
        self._cache: dict[str, tuple[int, Principal | None]] = {}
        self._lock = threading.Lock()

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
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = self._repo.authenticate(key)
        expires = now + (self._ttl_ms if found else self._negative_ttl_ms)
        with self._lock:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[key] = (expires, found)
        return found


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header (expected `Bearer <api key>`)")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip() or len(key) > 256:
        raise Unauthorized("malformed Authorization header (expected `Bearer <api key>`)")
    return key.strip()
