"""App-side entitlement checks with a short-TTL local cache: `Entitlements` (blocking) and
`AsyncEntitlements` (asyncio), which answer the same way.

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

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
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
    """A decision as the app sees it; `raw` is the service's whole answer. Quantities are exact
    `Decimal`s (the service writes them as exact JSON numbers, read here digit for digit)."""

    feature: str
    has_access: bool
    reason: str
    limit: Decimal | None = None
    used: Decimal | None = None
    remaining: Decimal | None = None
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
            limit=_quantity(body.get("limit")),
            used=_quantity(body.get("used")),
            remaining=_quantity(body.get("remaining")),
            plan=body.get("plan"),
            raw=body,
        )


def check_path(customer: str, feature: str) -> str:
    return f"/v1/customers/{customer}/entitlements/{feature}"


class _Decisions:
    """The cache and the reading of answers both clients share (no I/O here)."""

    def __init__(
        self,
        ttl: float,
        fail_open: Iterable[str],
        upgrade_url: str | None,
        clock: Callable[[], float],
    ) -> None:
        self.ttl = ttl
        self.fail_open = frozenset(fail_open)
        self.upgrade_url = upgrade_url
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Entitlement]] = {}
        self._lock = threading.Lock()

    def cached(self, customer: str, feature: str) -> Entitlement | None:
        """The fresh cached answer, or None (never touches the network)."""
        hit = self._cache.get((customer, feature))
        return hit[1] if hit is not None and hit[0] > self._clock() else None

    def invalidate(self, customer: str | None = None) -> None:
        """Forget cached answers of one customer, or all of them."""
        with self._lock:
            if customer is None:
                self._cache.clear()
            else:
                for key in [k for k in self._cache if k[0] == customer]:
                    del self._cache[key]

    def _checked(self, customer: str, feature: str, answer: httpx.Response | None) -> Entitlement:
        """The decision for a check's answer (None: the service could not be reached)."""
        if answer is None or answer.status_code >= 500:
            last = self._cache.get((customer, feature))
            return self._fail(feature) if last is None else dataclasses.replace(last[1], stale=True)
        if answer.status_code != 200:
            raise EntitlementsError(answer.status_code, _body(answer))
        found = Entitlement.from_answer(_exact_json(answer))
        with self._lock:
            self._cache[customer, feature] = (self._clock() + self.ttl, found)
        return found

    def _consumed(self, customer: str, feature: str, answer: httpx.Response | None) -> Entitlement:
        """The decision for a consume's answer (None: the service could not be reached)."""
        if answer is None or answer.status_code >= 500:
            return self._fail(feature)
        body = _body(answer)
        if answer.status_code not in (200, 403) or "has_access" not in _dict(body):
            raise EntitlementsError(answer.status_code, body)
        self.invalidate(customer)
        return Entitlement.from_answer(body)

    def _fail(self, feature: str) -> Entitlement:
        return Entitlement(feature, feature in self.fail_open, UNAVAILABLE, fallback=True)


class Entitlements(_Decisions):
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
        super().__init__(ttl, fail_open, upgrade_url, clock)
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
        """The decision, from the cache when fresh (see the module docstring for outages).

        Blocks for at most `timeout` on a cache miss."""
        found = self.cached(customer, feature)
        if found is not None:
            return found
        return self._checked(customer, feature, self._get(check_path(customer, feature)))

    def allowed(self, customer: str, feature: str) -> bool:
        return self.check(customer, feature).has_access

    def consume(self, customer: str, feature: str, amount: float, event_id: str) -> Entitlement:
        """Atomically check and record `amount` (idempotent per `event_id`; never cached).

        Raises EntitlementsError for 4xx other than a refusal; an outage answers the fail mode.
        """
        body = {"amount": amount, "event_id": event_id}
        try:
            answer = self._http.post(check_path(customer, feature) + "/consume", json=body)
        except httpx.TransportError:
            answer = None
        return self._consumed(customer, feature, answer)

    def _get(self, path: str) -> httpx.Response | None:
        try:
            return self._http.get(path)
        except httpx.TransportError:
            return None


class AsyncEntitlements(_Decisions):
    """The asyncio variant of `Entitlements`, with the same arguments and answers; close it
    with `async with` or `await aclose()`."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        ttl: float = 5.0,
        timeout: float = 2.0,
        fail_open: Iterable[str] = (),
        upgrade_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(ttl, fail_open, upgrade_url, clock)
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncEntitlements:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def check(self, customer: str, feature: str) -> Entitlement:
        """The decision, from the cache when fresh (see the module docstring for outages)."""
        found = self.cached(customer, feature)
        if found is not None:
            return found
        return self._checked(customer, feature, await self._get(check_path(customer, feature)))

    async def allowed(self, customer: str, feature: str) -> bool:
        return (await self.check(customer, feature)).has_access

    async def consume(
        self, customer: str, feature: str, amount: float, event_id: str
    ) -> Entitlement:
        """As `Entitlements.consume`."""
        body = {"amount": amount, "event_id": event_id}
        try:
            answer = await self._http.post(check_path(customer, feature) + "/consume", json=body)
        except httpx.TransportError:
            answer = None
        return self._consumed(customer, feature, answer)

    async def _get(self, path: str) -> httpx.Response | None:
        try:
            return await self._http.get(path)
        except httpx.TransportError:
            return None


def _dict(body: Any) -> dict[str, Any]:
    return body if isinstance(body, dict) else {}


def _body(answer: httpx.Response) -> Any:
    try:
        return _exact_json(answer)
    except ValueError:
        return answer.text


def _exact_json(answer: httpx.Response) -> Any:
    """The answer's JSON with every number that has a fraction read as an exact `Decimal`."""
    return json.loads(answer.content, parse_float=Decimal)


def _quantity(x: Any) -> Decimal | None:
    if x is None or isinstance(x, bool):
        return None
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
