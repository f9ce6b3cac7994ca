"""App-side entitlement checks: `Entitlements(url, api_key)` with a short-TTL local cache.

A check on the apps' request path must not cost a network round trip (~150 µs on loopback,
more across a network), so answers are cached in-process for `ttl` seconds (5 s by default):
a cached check is a dict lookup. `consume` is never cached: it is the exact, atomic path.

When the service is unreachable (connection error, timeout, 5xx), a check answers:
1. the last known answer for that (customer, feature), even past its TTL (`stale=True`); else
2. the feature's fail mode: `fail_open` features are allowed, every other feature is refused
   (`fail_closed`, the default), with reason `service_unavailable` and `fallback=True`.
Choose per feature: a cheap, non-critical feature can fail open; a billable one fails closed.

4xx answers are not outages: 401/403 (bad key) and 404 (unknown feature) raise
`EntitlementsError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

UNAVAILABLE = "service_unavailable"


class EntitlementsError(Exception):
    """The service refused the request itself (bad key, unknown feature, invalid input)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"entitlements service answered {status}: {body}")
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class Entitlement:
    """A decision as the app sees it; `raw` is the service's whole answer."""

    feature: str
    has_access: bool
    reason: str
    limit: float | None = None
    used: float | None = None
    remaining: float | None = None
    plan: str | None = None
    stale: bool = False
    fallback: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_answer(cls, body: dict[str, Any]) -> Entitlement:
        return cls(
            feature=str(body.get("feature")),
            has_access=bool(body.get("has_access")),
            reason=str(body.get("reason")),
            limit=body.get("limit"),
            used=body.get("used"),
            remaining=body.get("remaining"),
            plan=body.get("plan"),
            raw=body,
        )


class Entitlements:
    """A thread-safe client of the entitlements API for one tenant (its `read` or `ingest` key).

    `fail_open`: features allowed when the service cannot answer (all others are refused).
    `transport` (tests) replaces the HTTP transport; `clock` the monotonic clock.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        ttl: float = 5.0,
        timeout: float = 2.0,
        fail_open: Iterable[str] = (),
        upgrade_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.fail_open = frozenset(fail_open)
        self.upgrade_url = upgrade_url
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Entitlement]] = {}
        self._lock = threading.Lock()
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Entitlements:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def check(self, customer: str, feature: str) -> Entitlement:
        """The decision, from the cache when fresh (see the module docstring for outages)."""
        hit = self._cache.get((customer, feature))
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        return self._fetch(customer, feature, hit)

    def cached(self, customer: str, feature: str) -> Entitlement | None:
        """The fresh cached answer, or None (never touches the network)."""
        hit = self._cache.get((customer, feature))
        return hit[1] if hit is not None and hit[0] > self._clock() else None

    def allowed(self, customer: str, feature: str) -> bool:
        return self.check(customer, feature).has_access

    def consume(self, customer: str, feature: str, amount: float, event_id: str) -> Entitlement:
        """Atomically check and record `amount` (idempotent per `event_id`; never cached).

        Raises EntitlementsError for 4xx other than a refusal; an outage answers the fail mode.
        """
        path = f"/v1/customers/{customer}/entitlements/{feature}/consume"
        try:
            answer = self._http.post(path, json={"amount": amount, "event_id": event_id})
        except httpx.TransportError:
            return self._fail(feature)
        if answer.status_code >= 500:
            return self._fail(feature)
        body = answer.json()
        if answer.status_code not in (200, 403) or "has_access" not in body:
            raise EntitlementsError(answer.status_code, body)
        self.invalidate(customer)
        return Entitlement.from_answer(body)

    def invalidate(self, customer: str | None = None) -> None:
        """Forget cached answers of one customer, or all of them."""
        with self._lock:
            if customer is None:
                self._cache.clear()
            else:
                for key in [k for k in self._cache if k[0] == customer]:
                    del self._cache[key]

    def _fetch(
        self, customer: str, feature: str, last: tuple[float, Entitlement] | None
    ) -> Entitlement:
        try:
            answer = self._http.get(f"/v1/customers/{customer}/entitlements/{feature}")
        except httpx.TransportError:
            return self._degraded(feature, last)
        if answer.status_code >= 500:
            return self._degraded(feature, last)
        if answer.status_code != 200:
            raise EntitlementsError(answer.status_code, _body(answer))
        found = Entitlement.from_answer(answer.json())
        with self._lock:
            self._cache[customer, feature] = (self._clock() + self.ttl, found)
        return found

    def _degraded(self, feature: str, last: tuple[float, Entitlement] | None) -> Entitlement:
        if last is not None:
            e = last[1]
            return Entitlement(
                e.feature, e.has_access, e.reason, e.limit, e.used, e.remaining, e.plan, True
            )
        return self._fail(feature)

    def _fail(self, feature: str) -> Entitlement:
        return Entitlement(feature, feature in self.fail_open, UNAVAILABLE, fallback=True)


def _body(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return answer.text
