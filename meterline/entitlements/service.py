"""The entitlement service: checks and consumes, over the repositories, the view and Kafka.

`check` answers from cached plan data and the usage of the feature's period (decisions of plain
checks are cached for a fraction of a second). `consume` is the atomic check-and-record: the
view's `reserve` (one Lua step) grants against the limit counting usage plus pending
reservations, the granted amount is published as an ordinary usage event (id = the request's
`event_id`, property `meterline_reservation`), and the answer is stored so the same `event_id`
gets the same answer again. If publishing fails the reservation is released and the error
raised (nothing is stored: the client retries with the same `event_id`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Protocol

from meterline.catalog import Aggregation, Catalog, CatalogRepository, FeatureKind
from meterline.clock import Clock, SystemClock, to_ms
from meterline.entitlements.cache import CustomerCache
from meterline.entitlements.decide import Evaluation, decide, evaluate
from meterline.entitlements.model import Decision, Grant, Reason, Subscription
from meterline.entitlements.periods import Period
from meterline.entitlements.repository import (
    AnswerStore,
    GrantRepository,
    SubscriptionRepository,
)
from meterline.entitlements.usage import UsageReader
from meterline.errors import FieldError, MeterlineError, NotFound, ValidationFailed
from meterline.events import MAX_ID_LEN, MAX_VALUE, RESERVATION_PROPERTY, UsageEvent
from meterline.view import UsageView, ViewNotReady

JITTER = 0.1  # cached entries live 90-100% of their TTL, so they do not expire together
_TENANT = ""
_PROBE = "\x00probe"


class Publisher(Protocol):
    """`meterline.kafka.producer.EventPublisher`, or a memory stand-in in tests."""

    def publish(self, events: list[UsageEvent], timeout: float = 10.0) -> None: ...


@dataclass(frozen=True, slots=True)
class PlanData:
    catalog: Catalog
    subscription: Subscription | None
    grants: list[Grant]


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    plan_ttl: float = 30.0
    decision_ttl: float = 1.0
    reservation_ttl_s: int = 3600
    publish_timeout: float = 10.0


class EntitlementService:
    def __init__(
        self,
        catalogs: CatalogRepository,
        subscriptions: SubscriptionRepository,
        grants: GrantRepository,
        usage: UsageReader,
        view: UsageView,
        publisher: Publisher,
        answers: AnswerStore,
        clock: Clock | None = None,
        options: ServiceOptions | None = None,
    ) -> None:
        self._catalogs = catalogs
        self._subs = subscriptions
        self._grants = grants
        self._usage = usage
        self._view = view
        self._publisher = publisher
        self._answers = answers
        self._clock = clock or SystemClock()
        self.options = options or ServiceOptions()
        self._plans: CustomerCache[Any] = CustomerCache(self.options.plan_ttl, jitter=JITTER)
        self._decisions: CustomerCache[Decision] = CustomerCache(
            self.options.decision_ttl, jitter=JITTER
        )

    def invalidate(self, tenant_id: int, customer: str | None = None) -> None:
        """Forget cached plan data and decisions of one customer (or of the whole tenant)."""
        self._plans.invalidate(tenant_id, customer)
        self._decisions.invalidate(tenant_id, customer)

    def catalog(self, tenant_id: int) -> Catalog:
        """The tenant's current catalog; NotFound before its first `catalog apply`."""
        found = self._plans.get_or_load(
            tenant_id, _TENANT, "catalog", lambda: self._load(tenant_id)
        )
        assert isinstance(found, Catalog)
        return found

    def _load(self, tenant_id: int) -> Catalog:
        current = self._catalogs.current(tenant_id)
        if current is None:
            raise NotFound("this tenant has no catalog yet: run `meterline catalog apply`")
        return current[1]

    def plan_data(self, tenant_id: int, customer: str) -> PlanData:
        catalog = self.catalog(tenant_id)

        def load() -> PlanData:
            sub = self._subs.get(tenant_id, customer)
            return PlanData(catalog, sub, self._grants.list(tenant_id, customer))

        data = self._plans.get_or_load(tenant_id, customer, "plan", load)
        assert isinstance(data, PlanData)
        return data if data.catalog is catalog else load()

    def check(
        self, tenant_id: int, customer: str, feature: str, amount: float | None = None
    ) -> Decision:
        """The decision for one feature now (NotFound for a feature not in the catalog)."""
        if amount is not None:
            return self._decide(tenant_id, customer, feature, amount)
        return self._decisions.get_or_load(
            tenant_id, customer, feature, lambda: self._decide(tenant_id, customer, feature, None)
        )

    def cached_check(self, tenant_id: int, customer: str, feature: str) -> Decision | None:
        """The decision `check(tenant_id, customer, feature)` would return from its cache, or
        None when it would have to decide (and so read the usage). Never blocks on I/O."""
        return self._decisions.get(tenant_id, customer, feature)

    def cached_decision(
        self, tenant_id: int, customer: str, feature: str
    ) -> tuple[Decision, float] | None:
        """`cached_check` with the seconds the cached decision has left (for refresh-ahead)."""
        return self._decisions.lookup(tenant_id, customer, feature)

    def refresh(self, tenant_id: int, customer: str, feature: str) -> Decision:
        """Decide a plain check now, whatever is cached, and cache the result (unless the
        customer was invalidated meanwhile): what `check` does on a miss."""
        return self._decisions.load(
            tenant_id, customer, feature, lambda: self._decide(tenant_id, customer, feature, None)
        )

    def check_all(self, tenant_id: int, customer: str) -> list[Decision]:
        features = self.catalog(tenant_id).features
        return [self.check(tenant_id, customer, f.key) for f in features]

    def _evaluate(self, tenant_id: int, customer: str, feature: str) -> Evaluation:
        data = self.plan_data(tenant_id, customer)
        found = data.catalog.feature(feature)
        if found is None:
            raise NotFound(f"unknown feature {feature[:64]!r}: not in this tenant's catalog")
        return evaluate(data.catalog, found, data.subscription, data.grants, self._clock.now())

    def _decide(
        self, tenant_id: int, customer: str, feature: str, amount: float | None
    ) -> Decision:
        ev = self._evaluate(tenant_id, customer, feature)
        if ev.terms is None or ev.period is None or ev.terms.meter is None:
            return decide(ev)
        meter = ev.feature.meter
        assert meter is not None
        return decide(ev, self._current(tenant_id, customer, meter, ev.period), amount)

    def _current(self, tenant_id: int, customer: str, meter: str, period: Period) -> float:
        """Counted usage plus pending reservations of the period.

        For additive meters one `reserve` probe answers both: with amount 0 and limit -1 it can
        never grant, so it records nothing and returns usage + pending. When the view is not
        ready the counted part comes from the rollups instead.
        """
        found = self.catalog(tenant_id).meter(meter)
        assert found is not None
        if found.aggregation not in (Aggregation.SUM, Aggregation.COUNT):
            return self._usage.used(tenant_id, customer, meter, found.aggregation, period)
        start, end = to_ms(period.start), to_ms(period.end)
        try:
            probe = self._view.reserve(tenant_id, customer, meter, _PROBE, 0.0, -1.0, start, end, 1)
        except ViewNotReady as not_ready:
            counted = self._usage.used(tenant_id, customer, meter, found.aggregation, period)
            return not_ready.pending + counted
        return probe.used

    def consume(
        self, tenant_id: int, customer: str, feature: str, amount: float, event_id: str
    ) -> tuple[int, dict[str, Any]]:
        """(200, granted decision) or (403, refused decision); the first answer per event_id."""
        _check_consume(amount, event_id)
        stored = self._answers.get(tenant_id, event_id)
        if stored is not None:
            return stored
        ev = self._evaluate(tenant_id, customer, feature)
        if ev.feature.kind is not FeatureKind.METERED:
            raise ValidationFailed([FieldError("feature", "only metered features are consumed")])
        if ev.terms is None or ev.period is None:
            return self._answer(tenant_id, event_id, decide(ev), granted=False)
        decision = self._reserve(tenant_id, customer, ev, amount, event_id)
        self._decisions.invalidate(tenant_id, customer)
        return self._answer(tenant_id, event_id, decision, granted=decision.has_access)

    def _reserve(
        self, tenant_id: int, customer: str, ev: Evaluation, amount: float, event_id: str
    ) -> Decision:
        terms, period, meter = ev.terms, ev.period, ev.feature.meter
        assert terms is not None and period is not None and meter is not None
        blocking = terms.limit is not None and terms.overage.value == "block"
        limit = terms.limit if blocking else None
        start, end = to_ms(period.start), to_ms(period.end)
        ttl = self.options.reservation_ttl_s
        held = self._view.reserve(
            tenant_id, customer, meter, event_id, amount, limit, start, end, ttl
        )
        used = held.used
        decision = decide(ev, used, amount)
        if not held.granted:
            return replace(decision, has_access=False, reason=Reason.LIMIT_EXCEEDED)
        self._publish(tenant_id, customer, meter, event_id, amount, held.at_ms)
        return replace(decision, used=used + amount)

    def _publish(
        self, tenant_id: int, customer: str, meter: str, event_id: str, amount: float, at_ms: int
    ) -> None:
        """Publish the granted usage stamped `at_ms`, the instant the view attributed it to, so
        it is counted in the period it was checked against."""
        now = self._clock.now_ms()
        props = {RESERVATION_PROPERTY: True}
        event = UsageEvent(tenant_id, event_id, customer, meter, amount, at_ms, now, props)
        try:
            self._publisher.publish([event], self.options.publish_timeout)
        except (MeterlineError, Exception):
            self._view.release(tenant_id, customer, meter, event_id)
            raise

    def _answer(
        self, tenant_id: int, event_id: str, decision: Decision, granted: bool
    ) -> tuple[int, dict[str, Any]]:
        body = {**decision.as_dict(), "granted": granted, "event_id": event_id}
        return self._answers.put(tenant_id, event_id, 200 if granted else 403, body)


def _check_consume(amount: float, event_id: str) -> None:
    errors = []
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount):
        errors.append(FieldError("amount", "must be a finite number"))
    elif not 0 < amount <= MAX_VALUE:
        errors.append(FieldError("amount", "must be greater than 0 and at most 1e15"))
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= MAX_ID_LEN:
        errors.append(FieldError("event_id", f"must be 1 to {MAX_ID_LEN} characters"))
    if errors:
        raise ValidationFailed(errors)
