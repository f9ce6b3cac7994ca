"""The entitlement service: checks and consumes, over the repositories, the view and Kafka.

`check` answers from cached plan data and the usage of the feature's period (decisions of plain
checks are cached for a fraction of a second). `consume` is the atomic check-and-record: it
claims its `event_id` in Postgres (with the event it asks for: amount and first timestamp),
refuses an id ingest already holds (409), lets the view's `reserve` (one Lua step) grant against
the limit counting usage plus pending reservations, stores the answer, then publishes the
granted amount as an ordinary usage event (id = `event_id`, property `meterline_reservation`).
A publish whose fate is unknown keeps the reservation and the stored answer; the retry publishes
the same event again. Consume's steps, why each is where it is, and how concurrent consumes
are decided in batches (`consume_many`): `consume.py`'s docstring.

When the view is not ready (flushed, rebuilding) `reserve` says so from inside its script
(`ViewNotReady`), never from a cached flag. The service then asks again with `counted`: the
pending grants Postgres records that Redis does not hold (granted answers of the period whose
ids are not counted, minus the ids in Redis's pending hash, read first), then the rollups'
usage. The script decides against that and the pending reservations Redis holds (not the
partial view), and plain checks read the same sum. So a flush never forgets a grant, even
before the rebuild restores it, and no grant is made against a partial view; a grant or event
that lands between the reads is counted twice for that one decision (it can only
under-grant).

The id space survives a Redis loss: ingest's dedupe store answers "not held, but I may have
lost it" for an id it does not hold while it is not known to be intact (a per-tenant key in
Redis, see meterline/dedupe), and ingest then asks Postgres whether consume granted that id
(`GrantedIds`: `entitlement_answers`, status 200); it restores the store's consume ids in the
background. Known limits: an ingest event with a consume's id sent after the dedupe window
(`METERLINE_INGEST_DEDUPE_WINDOW_S`, 1 h by default; the entitlements setting
`DEDUPE_WINDOW_S` must equal it), or while Redis is down, is answered as accepted and the
ledger keeps the consume's event; so is an ingest event and a consume with one id that arrive
at the same moment (the consume's reservation is then dropped when its copy reaches the
aggregator). A consume after a Redis loss does not see an id ingest accepted and the
aggregator has not counted yet. A granted answer whose publish never succeeds and is never
retried holds its amount until its period ends (it can only under-grant).

Plain checks read usage + pending with a `reserve` probe (amount 0, limit -1: never grants,
records nothing) for additive meters, and `usage` for max/latest meters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from meterline.catalog import Aggregation, Catalog, CatalogRepository, Limit
from meterline.catalog.aggregation import RULES, Combine
from meterline.clock import Clock, SystemClock, to_ms
from meterline.entitlements.cache import CustomerCache
from meterline.entitlements.consume import ConsumeAsk, Consumes, OnOutcomes, Outcome
from meterline.entitlements.counted_notices import announce_counted
from meterline.entitlements.decide import Evaluation, decide, evaluate
from meterline.entitlements.ids import IngestedIds, MemoryIngestedIds
from meterline.entitlements.invalidation import Change, ChangeFeed, LocalFeed
from meterline.entitlements.model import Decision, Grant, Subscription
from meterline.entitlements.periods import Period
from meterline.entitlements.repository import (
    AnswerStore,
    GrantRepository,
    SubscriptionRepository,
)
from meterline.entitlements.thresholds import Notifier
from meterline.entitlements.usage_reader import UsageReader
from meterline.errors import FieldError, NotFound, ValidationFailed
from meterline.events import UsageEvent
from meterline.values import exact_sum, to_decimal, value_problem
from meterline.view import Reservation, ReserveAsk, SyncedView, ViewNotReady

log = logging.getLogger(__name__)
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
    """`claim_lease_s`: a consume's claim on its event_id left undecided this long (its holder
    crashed) is taken over by a retry; `claim_wait_s`: how long a concurrent consume of the same
    event_id waits for the first one's answer before answering 503."""

    plan_ttl: float = 30.0
    decision_ttl: float = 1.0
    publish_timeout: float = 10.0
    claim_lease_s: float = 30.0
    claim_wait_s: float = 2.0


class EntitlementService:
    def __init__(
        self,
        catalogs: CatalogRepository,
        subscriptions: SubscriptionRepository,
        grants: GrantRepository,
        usage: UsageReader,
        view: SyncedView,
        publisher: Publisher,
        answers: AnswerStore,
        clock: Clock | None = None,
        options: ServiceOptions | None = None,
        ingested: IngestedIds | None = None,
        changes: ChangeFeed | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self._catalogs = catalogs
        self._subs = subscriptions
        self._grants = grants
        self._usage = usage
        self._view = view
        self._publisher = publisher
        self._answers = answers
        self._ingested = ingested or MemoryIngestedIds()
        self._notifier = notifier
        self._clock = clock or SystemClock()
        self.options = options or ServiceOptions()
        self._plans: CustomerCache[Any] = CustomerCache(self.options.plan_ttl, jitter=JITTER)
        self._decisions: CustomerCache[Decision] = CustomerCache(
            self.options.decision_ttl, jitter=JITTER
        )
        self._changes = changes or LocalFeed()
        self._consumes = Consumes(self)

    # What the consume flow (`consume.py`) works with; read at each use (tests swap them).
    @property
    def view(self) -> SyncedView:
        return self._view

    @property
    def publisher(self) -> Publisher:
        return self._publisher

    @property
    def answers(self) -> AnswerStore:
        return self._answers

    @property
    def ingested(self) -> IngestedIds:
        return self._ingested

    @property
    def notifier(self) -> Notifier | None:
        return self._notifier

    @property
    def clock(self) -> Clock:
        return self._clock

    def invalidate(self, tenant_id: int, customer: str | None = None) -> None:
        """Forget cached plan data and decisions of one customer (or of the whole tenant),
        here and in every other replica. Call it once the change is durable."""
        self.changed(Change(tenant_id, customer))

    def changed(self, change: Change) -> None:
        self.forget(change)
        self._changes.publish(change)

    def forget(self, change: Change) -> None:
        """Drop what `change` makes stale from this replica's caches (what another told)."""
        if change.plans:
            self._plans.invalidate(change.tenant_id, change.customer)
        self._decisions.invalidate(change.tenant_id, change.customer)

    def clear(self) -> None:
        self._plans.clear()
        self._decisions.clear()

    def cap_ttl(self, seconds: float | None) -> None:
        self._plans.cap_ttl(seconds)
        self._decisions.cap_ttl(seconds)

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

    def preload_plans(self, tenant_id: int, customers: Iterable[str]) -> None:
        """Cache the plan data of those of `customers` not cached, read for all of them at
        once (two statements: subscriptions, grants) where `plan_data` would read each alone:
        what a batch of consumes of new customers saves."""
        catalog = self.catalog(tenant_id)
        missing = [c for c in set(customers) if not self._plan_cached(tenant_id, c, catalog)]
        if len(missing) < 2:
            return
        generation = self._plans.generation
        subs = self._subs.get_many(tenant_id, missing)
        grants = self._grants.list_many(tenant_id, missing)
        for c in missing:
            data = PlanData(catalog, subs.get(c), grants.get(c, []))
            self._plans.put_if_current(tenant_id, c, "plan", data, generation)

    def _plan_cached(self, tenant_id: int, customer: str, catalog: Catalog) -> bool:
        found = self._plans.get(tenant_id, customer, "plan")
        return isinstance(found, PlanData) and found.catalog is catalog

    def check(
        self, tenant_id: int, customer: str, feature: str, amount: Decimal | float | None = None
    ) -> Decision:
        """The decision for one feature now (NotFound for a feature not in the catalog)."""
        if amount is not None:
            if (problem := value_problem(amount)) is not None:
                raise ValidationFailed([FieldError("amount", problem)])
            return self._decide(tenant_id, customer, feature, to_decimal(amount))
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

    def evaluate(
        self, tenant_id: int, customer: str, feature: str, at: datetime | None = None
    ) -> Evaluation:
        data = self.plan_data(tenant_id, customer)
        found = data.catalog.feature(feature)
        if found is None:
            raise NotFound(f"unknown feature {feature[:64]!r}: not in this tenant's catalog")
        now = at or self._clock.now()
        return evaluate(data.catalog, found, data.subscription, data.grants, now)

    def _decide(
        self, tenant_id: int, customer: str, feature: str, amount: Decimal | None
    ) -> Decision:
        ev = self.evaluate(tenant_id, customer, feature)
        if ev.terms is None or ev.period is None or ev.terms.meter is None:
            return decide(ev)
        meter = ev.feature.meter
        assert meter is not None
        decision = decide(ev, self._current(tenant_id, customer, meter, ev.period), amount)
        if amount is None and self._notifier is not None:
            self._announce_checked(tenant_id, customer, decision)
        return decision

    def _announce_checked(self, tenant_id: int, customer: str, decision: Decision) -> None:
        """A plain check sees usage consumes never did (ingested events): announce the
        thresholds it shows. A failure only logs: the next check that decides tries again."""
        assert self._notifier is not None
        percents = self.thresholds(tenant_id, decision.plan, decision.feature)
        if not percents and decision.overage != "allow":
            return  # nothing to announce: skip building the body
        try:
            self._notifier.announce(tenant_id, customer, decision.as_dict(), percents)
        except Exception:
            log.warning("could not record the notices of a check", exc_info=True)

    def announce_usage(self, tenant_id: int, customers: Sequence[str]) -> int:
        """Decide now every feature of `customers` that can announce something and record the
        notices each shows: what the usage detector (`usage_notices.py`) does for customers
        whose counted usage changed, many at once (`counted_notices.py`). Returns how many
        features' usage was read; raises what reading the usage or recording raises (the
        detector looks at those customers again)."""
        return announce_counted(self, tenant_id, customers)

    def thresholds(self, tenant_id: int, plan_key: str | None, feature: str) -> tuple[Limit, ...]:
        plan = self.catalog(tenant_id).plan(plan_key or "")
        return plan.thresholds(feature) if plan else ()

    def _current(self, tenant_id: int, customer: str, meter: str, period: Period) -> Decimal:
        """Counted usage plus pending reservations of the period.

        For additive meters one `reserve` probe answers both: with amount 0 and limit -1 it can
        never grant, so it records nothing and returns usage + pending. When the view is not
        ready (`ViewNotReady`, decided inside the same script) the probe is asked again with
        what Postgres counts that the view may lack (`_counted_elsewhere`).
        """
        aggregation = self.aggregation(tenant_id, meter)
        if RULES[aggregation].over_time is not Combine.ADD:
            return self._usage.used(tenant_id, customer, meter, aggregation, period)
        start, end = to_ms(period.start), to_ms(period.end)
        try:
            return self._probe(tenant_id, customer, meter, start, end, None).used
        except ViewNotReady:
            counted = self.counted_elsewhere(tenant_id, customer, meter, period)
            return self._probe(tenant_id, customer, meter, start, end, counted).used

    def current_many(
        self, tenant_id: int, reads: Sequence[tuple[str, str, Period]]
    ) -> list[Decimal]:
        """`_current` of many (customer, meter, period) reads: every additive meter's probe in
        one Redis pipeline (`reserve_many`); a probe the view is not ready for, and every
        max/latest meter, is read as `_current` reads it, one by one. Raises the first other
        error an answer holds."""
        probes: dict[int, ReserveAsk] = {}
        for i, (customer, meter, period) in enumerate(reads):
            if RULES[self.aggregation(tenant_id, meter)].over_time is Combine.ADD:
                start, end = to_ms(period.start), to_ms(period.end)
                probes[i] = ReserveAsk(
                    tenant_id, customer, meter, _PROBE, Decimal(0), Decimal(-1), start, end, start
                )
        answers = dict(zip(probes, self._view.reserve_many(list(probes.values())), strict=True))
        found = []
        for i, (customer, meter, period) in enumerate(reads):
            answer = answers.get(i)
            if isinstance(answer, Exception) and not isinstance(answer, ViewNotReady):
                raise answer
            if isinstance(answer, Reservation):
                found.append(answer.used)
            else:
                found.append(self._current(tenant_id, customer, meter, period))
        return found

    def _probe(
        self,
        tenant_id: int,
        customer: str,
        meter: str,
        start: int,
        end: int,
        counted: Decimal | None,
    ) -> Reservation:
        """A `reserve` that can never grant (amount 0, limit -1): it records nothing and
        answers usage + pending, atomically with the view's readiness."""
        return self._view.reserve(
            tenant_id, customer, meter, _PROBE, Decimal(0), Decimal(-1), start, end, start, counted
        )

    def counted_elsewhere(
        self, tenant_id: int, customer: str, meter: str, period: Period
    ) -> Decimal:
        """What a view that is not ready may lack: the pending grants Postgres records that it
        does not hold (`_unrestored`), then the rollups of the period. Read in that order, an
        event counted between the two reads is counted twice, never zero times."""
        lost = self._unrestored(tenant_id, customer, meter, period)
        aggregation = self.aggregation(tenant_id, meter)
        settled = self._usage.settled(tenant_id, customer, meter, aggregation, period)
        return exact_sum((lost, settled))

    def _unrestored(self, tenant_id: int, customer: str, meter: str, period: Period) -> Decimal:
        """The pending grants Postgres records that the view does not hold (a flush lost them
        and no rebuild restored them yet). The view's ids are read first: a grant made between
        the two reads is then counted twice (never zero times) by the caller's `reserve`."""
        held = self._view.held_ids(tenant_id, customer, meter)
        start, end = to_ms(period.start), to_ms(period.end)
        grants = self._answers.pending(tenant_id, customer, meter, start, end)
        return exact_sum(amount for event_id, amount in grants.items() if event_id not in held)

    def consume(
        self, tenant_id: int, customer: str, feature: str, amount: object, event_id: object
    ) -> tuple[int, dict[str, Any]]:
        """(200, granted decision), (403, refused decision) or (409, the id is ingest's); every
        repeat of an `event_id` gets its first answer, whatever amount it asks.

        `event_id`, `customer` and `amount` are checked exactly as ingest checks an event's
        `id`, `customer` and `value` (ValidationFailed, 422, naming each bad field). Raises
        Unavailable (503) when the granted event's publish was not acknowledged (its fate is
        unknown: the reservation and the answer stay, and a retry with the same `event_id`
        publishes the same event again, same timestamp), or when another consume of the same
        `event_id` is still deciding after `claim_wait_s`. Blocks on Redis, Postgres, Kafka.
        A batch of one of `consume_many`.
        """
        ask = ConsumeAsk(tenant_id, customer, feature, amount, event_id)
        outcome = self._consumes.consume_many([ask])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def consume_many(
        self, asks: Sequence[ConsumeAsk], on_outcomes: OnOutcomes | None = None
    ) -> list[Outcome]:
        """`consume` of concurrent requests, decided together (`consume.py`): each its own
        outcome, (status, body) or the error `consume` would raise."""
        return self._consumes.consume_many(asks, on_outcomes)

    def aggregation(self, tenant_id: int, meter: str) -> Aggregation:
        found = self.catalog(tenant_id).meter(meter)
        assert found is not None, "the catalog refuses a feature on an unknown meter"
        return found.aggregation
