"""Principals of recently seen API keys, for the fast path on the event loop.

`Authenticator.principal` answers from its own cache, but once its entry of a key expires
(every `auth_cache_ttl`, 30 s by default) the next call reads Postgres, and the fast path
would make that call on the event loop: every connection stalls for the round trip. So the
fast path asks `RecentPrincipals.now` instead, which never blocks: a key's principal seen within
the last `ttl` seconds, else None (the request then takes the ASGI path, where `fetch` calls
the Authenticator in a worker thread and remembers the answer). A revoked key is answered for
at most `ttl` seconds longer than the Authenticator alone would answer it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from meterline.auth import Authenticator
from meterline.errors import Forbidden
from meterline.tenants import Principal
from meterline.ttlmap import TtlMap

SCOPE = "read"  # the scope of a plain check


def principal_with_any(auth: Authenticator, header: str | None, scopes: Sequence[str]) -> Principal:
    """The key's principal if it holds one of `scopes`: Unauthorized for a bad key, Forbidden
    when it holds none of them."""
    if len(scopes) == 1:
        return auth.principal(header, scopes[0])
    for scope in scopes:
        try:
            return auth.principal(header, scope)
        except Forbidden:
            continue
    raise Forbidden(f"this key needs one of the scopes {', '.join(scopes)}")


class RecentPrincipals:
    """Principals holding one of `scopes` (default: SCOPE), by `Authorization` header,
    remembered for `ttl` seconds."""

    def __init__(
        self,
        auth: Authenticator,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
        scopes: Sequence[str] = (SCOPE,),
    ) -> None:
        self._auth = auth
        self._scopes = tuple(scopes)
        self._clock = clock
        self._known: TtlMap[str | None, Principal] = TtlMap(
            ttl, max_entries=max_entries, clock=clock
        )
        self._seen = self._known.entries  # the hit path: one dict get and one compare

    def now(self, authorization: str | None) -> Principal | None:
        """The principal of `authorization` if `fetch` found it within `ttl`, else None."""
        hit = self._seen.get(authorization)
        if hit is None or hit[0] <= self._clock():
            return None
        return hit[1]

    async def fetch(self, authorization: str | None) -> Principal:
        """`principal_with_any(auth, authorization, scopes)` in a worker thread, remembered
        when it succeeds; raises its errors (Unauthorized, Forbidden) unremembered."""
        who = await asyncio.to_thread(principal_with_any, self._auth, authorization, self._scopes)
        self._known.put(authorization, who)
        return who
