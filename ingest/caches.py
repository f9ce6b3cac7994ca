"""Short-TTL, in-process caches that keep Postgres off the hot path: API keys and catalogs.

Lookups that miss run the blocking repository call on a worker thread, bounded by a timeout;
a repository that fails or times out becomes Unavailable (503), except that a catalog whose
refresh fails keeps serving its last known meters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from meterline.auth import Authenticator
from meterline.catalog import CatalogRepository
from meterline.clock import Clock, SystemClock
from meterline.errors import Forbidden, MeterlineError, Unauthorized, Unavailable
from meterline.tenants import Principal, TenantRepository
from meterline.ttlmap import TtlMap

T = TypeVar("T")
log = logging.getLogger("ingest.caches")


async def _off_loop(fn: Callable[[], T], timeout: float, what: str) -> T:
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn), timeout)
    except MeterlineError:
        raise
    except Exception as exc:  # any repository failure is an outage to retry, never a 500
        log.warning("lookup failed", extra={"what": what, "error": repr(exc)})
        raise Unavailable(f"cannot {what} right now; retry shortly", 2) from None


class KeyCache:
    """Principals of live keys that hold `scope`, and refusals, kept on the event loop.

    The only cache of API keys in ingest: below it, the keys are checked against `repo` on
    every miss (an `Authenticator` that keeps nothing), so a revoked key stops working within
    `ttl_s` (15 s by default; the contract promises 60 s). Refusals (401, 403) are kept
    `refusal_ttl_s`, so a flood of bad keys cannot load Postgres; a key created meanwhile
    works once that passes. Outages (503) are never kept.
    """

    def __init__(
        self,
        repo: TenantRepository,
        scope: str,
        ttl_s: float = 15.0,
        refusal_ttl_s: float = 5.0,
        timeout_s: float = 5.0,
        clock: Clock | None = None,
        max_entries: int = 10_000,
    ) -> None:
        self._clock = clock or SystemClock()
        self._auth = Authenticator(repo, ttl=0, negative_ttl=0, clock=self._clock)
        self._scope = scope
        self._refusal_ttl_ms = int(refusal_ttl_s * 1000)
        self._timeout = timeout_s
        self._known: TtlMap[str, Principal | MeterlineError] = TtlMap(
            int(ttl_s * 1000), max_entries=max_entries, clock=self._clock.now_ms
        )
        self._entries = self._known.entries  # the hit path: one dict get and one compare

    async def principal(self, authorization: str | None) -> Principal:
        """The principal of the header's key; raises Unauthorized, Forbidden or Unavailable."""
        now = self._clock.now_ms()
        header = authorization or ""
        hit = self._entries.get(header)
        if hit is None or hit[0] <= now:
            found, ttl_ms = await self._check(authorization)
            self._known.put(header, found, ttl_ms, now)
            hit = self._entries[header]
        if isinstance(hit[1], Principal):
            return hit[1]
        raise hit[1].with_traceback(None)  # a kept refusal, without the last raise's frames

    async def _check(
        self, authorization: str | None
    ) -> tuple[Principal | MeterlineError, int | None]:
        """The principal (kept the TTL) or a refusal (kept the refusal TTL)."""
        try:
            found = await _off_loop(
                lambda: self._auth.principal(authorization, self._scope),
                self._timeout,
                "check the API key",
            )
        except (Unauthorized, Forbidden) as refused:
            return refused, self._refusal_ttl_ms
        return found, None


class MeterCache:
    """Each tenant's meters and their CloudEvents `value_property`, kept `ttl_s`."""

    def __init__(
        self,
        repo: CatalogRepository,
        ttl_s: float = 10.0,
        timeout_s: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self._repo = repo
        self._timeout = timeout_s
        self._clock = clock or SystemClock()
        self._known: TtlMap[int, dict[str, str]] = TtlMap(
            int(ttl_s * 1000), clock=self._clock.now_ms
        )
        self._meters = self._known.entries  # the hit path: one dict get and one compare

    async def meters(self, tenant_id: int) -> dict[str, str]:
        """Meter key → value_property; empty before the tenant's first catalog apply."""
        now = self._clock.now_ms()
        hit = self._meters.get(tenant_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            meters = await _off_loop(
                lambda: self._load(tenant_id), self._timeout, "read the catalog"
            )
        except Unavailable:
            if hit is None:
                raise
            meters = hit[1]  # a failed refresh keeps serving the last known meters
        self._known.put(tenant_id, meters, now=now)
        return meters

    def _load(self, tenant_id: int) -> dict[str, str]:
        current = self._repo.current(tenant_id)
        if current is None:
            return {}
        return {m.key: m.value_property for m in current[1].meters}
