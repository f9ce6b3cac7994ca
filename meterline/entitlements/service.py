"""The entitlement service: checks and consumes, over the repositories, the view and Kafka.

`check` answers from cached plan data and the usage of the feature's period (decisions of plain
checks are cached for a fraction of a second). `consume` is the atomic check-and-record: it
claims its `event_id` in Postgres (with the event it asks for: amount and first timestamp),
refuses an id ingest already holds (409), lets the view's `reserve` (one Lua step) grant against
the limit counting usage plus pending reservations, stores the answer, then publishes the
granted amount as an ordinary usage event (id = `event_id`, property `meterline_reservation`).
A publish whose fate is unknown keeps the reservation and the stored answer; the retry publishes
the same event again. See README.md ("Consume") for why each step is where it is.

Consume:

One `event_id`, one answer, one event, counted once. In order:

1. **Validate** with ingest's own `validate_event` (`event_id` as `id`, the customer, `amount` as
   `value`): the same lengths, no control characters, `amount` a JSON number under the value
   rule of `meterline/values.py` (0 to 1e15, at most 6 decimals and 15 significant digits; a
   string or a boolean is refused). Limits, usage and amounts are exact decimals from here on:
   `used + amount <= limit` never meets a binary float. Errors name `event_id`, `customer` and
   `amount`. So nothing
   consume grants can be sent to the dead-letter topic by the aggregator.
2. **Claim** the id in `entitlement_answers` (migration 0009) together with the event it asks
   for: customer, meter, amount and the timestamp of this first attempt, which is the instant
   its usage is attributed to (`meterline.view.attributed_ms`: now clamped into the minutes of
   the feature's period, see meterline/view/README.md "The period rule"). Every later attempt
   with that id (a retry, a concurrent request with another amount) uses this stored event, so
   a retry keeps its first timestamp (issue 19 item 1), reserves and publishes at that same
   instant, and is counted in the minute and period it was checked against; and concurrent
   consumes of one id cannot inflate `used`: the others poll for the first one's answer
   (`claim_wait_s`, then 503). A
   claim whose decision fails (Redis or Postgres error) is given up at once, and one left
   undecided for `claim_lease_s` (its holder crashed) lapses: either way a retry takes it over,
   with the stored event.
3. **One id space with ingest**: an id ingest already holds (counted: in `usage_event_ids`, or
   accepted within ingest's dedupe window) answers `409` (stored: every repeat gets it; the
   claim's own statement reads the ledger, then the dedupe store is asked); once a
   grant is stored, consume marks ingest's dedupe store with the id (before publishing, so a
   publish of unknown fate is covered too), and ingest answers a later event with that id as a
   duplicate. So what is answered is what is counted.
4. **Reserve** (one Lua step in Redis) counts period usage + pending reservations and grants
   iff the amount fits a blocking limit (unlimited / overage `allow` reserve without a limit).
   The stored timestamp is the reservation's time (the period is evaluated at it), and the
   reservation never lapses: it is removed when its id is counted (in the aggregator's Redis
   step for the batch that holds its event, even when that event is a copy of one counted
   first) or by a rebuild that finds it counted.
5. **Store** the answer (first wins); a grant is stored *before* its publish, with
   `published = false`. Granted answers whose ids are not counted (`usage_event_ids`, the
   identity table, whatever the day of the event) are the pending
   reservations: `meterline.view.postgres.rebuild` restores them into Redis after a flush, so Redis
   never
   holds their only copy.
6. **Publish** the event (id = `event_id`, the stored timestamp, property
   `meterline_reservation: true`), then mark the answer published (flags are written in
   batches every 20 ms, `published.py`: a flag not written yet only makes a retry publish the
   same event again, which the ledger counts once). A publish that fails or
   times out answers 503 and keeps the reservation and the answer: the producer may still
   deliver the message, so releasing would open an over-grant window and bill a request
   answered 503. A retry with the same `event_id` publishes the same event again (the ledger
   counts it once) and returns the stored answer.

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
import time
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from meterline.catalog import Aggregation, Catalog, CatalogRepository, FeatureKind, Limit
from meterline.catalog.aggregation import RULES, Combine
from meterline.clock import Clock, SystemClock, from_ms, to_ms
from meterline.entitlements.cache import CustomerCache
from meterline.entitlements.decide import Evaluation, decide, evaluate
from meterline.entitlements.ids import IngestedIds, MemoryIngestedIds
from meterline.entitlements.invalidation import Change, ChangeFeed, LocalFeed
from meterline.entitlements.model import Decision, Grant, Reason, Subscription
from meterline.entitlements.periods import Period
from meterline.entitlements.repository import (
    Answer,
    AnswerStore,
    Claim,
    ConsumeEvent,
    GrantRepository,
    SubscriptionRepository,
)
from meterline.entitlements.thresholds import Notifier
from meterline.entitlements.usage import UsageReader
from meterline.errors import FieldError, MeterlineError, NotFound, Unavailable, ValidationFailed
from meterline.events import RESERVATION_PROPERTY, Rules, UsageEvent, validate_event
from meterline.values import exact_sum, to_decimal, value_problem
from meterline.view import Reservation, SyncedView, ViewNotReady, attributed_ms

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

    def invalidate(self, tenant_id: int, customer: str | None = None) -> None:
        """Forget cached plan data and decisions of one customer (or of the whole tenant),
        here and in every other replica. Call it once the change is durable."""
        self._changed(Change(tenant_id, customer))

    def _changed(self, change: Change) -> None:
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

    def _evaluate(
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
        ev = self._evaluate(tenant_id, customer, feature)
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
        percents = self._thresholds(tenant_id, decision.plan, decision.feature)
        if not percents and decision.overage != "allow":
            return  # nothing to announce: skip building the body
        try:
            self._notifier.announce(tenant_id, customer, decision.as_dict(), percents)
        except Exception:
            log.warning("could not record the notices of a check", exc_info=True)

    def _thresholds(self, tenant_id: int, plan_key: str | None, feature: str) -> tuple[Limit, ...]:
        plan = self.catalog(tenant_id).plan(plan_key or "")
        return plan.thresholds(feature) if plan else ()

    def _current(self, tenant_id: int, customer: str, meter: str, period: Period) -> Decimal:
        """Counted usage plus pending reservations of the period.

        For additive meters one `reserve` probe answers both: with amount 0 and limit -1 it can
        never grant, so it records nothing and returns usage + pending. When the view is not
        ready (`ViewNotReady`, decided inside the same script) the probe is asked again with
        what Postgres counts that the view may lack (`_counted_elsewhere`).
        """
        aggregation = self._aggregation(tenant_id, meter)
        if RULES[aggregation].over_time is not Combine.ADD:
            return self._usage.used(tenant_id, customer, meter, aggregation, period)
        start, end = to_ms(period.start), to_ms(period.end)
        try:
            return self._probe(tenant_id, customer, meter, start, end, None).used
        except ViewNotReady:
            counted = self._counted_elsewhere(tenant_id, customer, meter, period)
            return self._probe(tenant_id, customer, meter, start, end, counted).used

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

    def _counted_elsewhere(
        self, tenant_id: int, customer: str, meter: str, period: Period
    ) -> Decimal:
        """What a view that is not ready may lack: the pending grants Postgres records that it
        does not hold (`_unrestored`), then the rollups of the period. Read in that order, an
        event counted between the two reads is counted twice, never zero times."""
        lost = self._unrestored(tenant_id, customer, meter, period)
        aggregation = self._aggregation(tenant_id, meter)
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
        """
        meter = self._metered(tenant_id, feature)
        first = self._consume_event(tenant_id, customer, feature, meter, amount, event_id)
        assert isinstance(event_id, str)
        claim = self._claim(tenant_id, event_id, first)
        answer = claim.answer or self._decide_or_abandon(tenant_id, feature, event_id, claim)
        if answer.status == 200 and not answer.published:
            self._publish(tenant_id, event_id, claim.event)
        self._announce(tenant_id, claim.event.customer, answer)
        return answer.status, answer.body

    def _announce(self, tenant_id: int, customer: str, answer: Answer) -> None:
        """Record the thresholds and limit notices the answer shows (`thresholds.py`), on every
        answer, repeats included: a notice lost to a failure here is written by the retry.
        Unavailable when they cannot be recorded (the answer stands; retry the event_id)."""
        if self._notifier is None or answer.status not in (200, 403):
            return
        percents = self._thresholds(tenant_id, answer.body.get("plan"), answer.body["feature"])
        try:
            self._notifier.announce(tenant_id, customer, answer.body, percents)
        except MeterlineError:
            raise
        except Exception as error:
            message = "the answer's notices were not recorded; retry the event_id"
            raise Unavailable(message) from error

    def _metered(self, tenant_id: int, feature: str) -> str:
        found = self.catalog(tenant_id).feature(feature)
        if found is None:
            raise NotFound(f"unknown feature {feature[:64]!r}: not in this tenant's catalog")
        if found.kind is not FeatureKind.METERED or found.meter is None:
            raise ValidationFailed([FieldError("feature", "only metered features are consumed")])
        if RULES[self._aggregation(tenant_id, found.meter)].over_time is not Combine.ADD:
            raise ValidationFailed(
                [FieldError("feature", "only features on a sum or count meter are consumed")]
            )
        return found.meter

    def _aggregation(self, tenant_id: int, meter: str) -> Aggregation:
        found = self.catalog(tenant_id).meter(meter)
        assert found is not None, "the catalog refuses a feature on an unknown meter"
        return found.aggregation

    def _consume_event(
        self,
        tenant_id: int,
        customer: str,
        feature: str,
        meter: str,
        amount: object,
        event_id: object,
    ) -> ConsumeEvent:
        """The event this consume asks for, validated by ingest's own rules, timed at the
        instant its usage is attributed to (`attributed_ms`: now clamped into the minutes of
        the feature's period). The claim stores that instant as the event's first timestamp,
        so every retry reserves at it and publishes it, and the event counts in the minute
        and period its reservation was checked against."""
        now = self._clock.now_ms()
        raw = {"id": event_id, "customer": customer, "meter": meter, "value": amount}
        checked = validate_event(raw, tenant_id, Rules(now, (meter,)))
        if isinstance(checked, list):
            raise ValidationFailed([FieldError(_FIELDS[e.field], e.message) for e in checked])
        if checked.value != 1 and RULES[self._aggregation(tenant_id, meter)].counts_events:
            raise ValidationFailed([FieldError("amount", "must be 1: a count meter counts events")])
        period = self._evaluate(tenant_id, checked.customer, feature, from_ms(now)).period
        at = now if period is None else attributed_ms(now, to_ms(period.start), to_ms(period.end))
        return ConsumeEvent(checked.customer, meter, to_decimal(checked.value), at)

    def _claim(self, tenant_id: int, event_id: str, first: ConsumeEvent) -> Claim:
        """Claim `event_id`, or wait (polling) for the answer of the consume that holds it."""
        deadline = time.monotonic() + self.options.claim_wait_s
        lease = self.options.claim_lease_s
        while True:
            claim = self._answers.claim(tenant_id, event_id, first, lease)
            if claim.owner or claim.answer is not None:
                return claim
            if time.monotonic() > deadline:
                raise Unavailable("another consume of this event_id is still deciding; retry")
            time.sleep(0.005)

    def _decide_or_abandon(
        self, tenant_id: int, feature: str, event_id: str, claim: Claim
    ) -> Answer:
        """Decide a claimed id; on any error give the claim up at once (its event kept), so the
        client's retry takes it over instead of waiting for the lease to lapse."""
        try:
            return self._decide_claimed(tenant_id, feature, event_id, claim)
        except Exception:
            with suppress(Exception):
                self._answers.abandon(tenant_id, event_id)
            raise

    def _decide_claimed(self, tenant_id: int, feature: str, event_id: str, claim: Claim) -> Answer:
        event = claim.event
        if self._ingested.held(tenant_id, event_id, claim.in_ledger):
            message = f"event_id {event_id!r} is already used by an ingested event"
            body = {"error": "conflict", "message": message, "granted": False, "event_id": event_id}
            return self._answers.decide(tenant_id, event_id, Answer(409, body))
        ev = self._evaluate(tenant_id, event.customer, feature, from_ms(event.event_ms))
        if ev.terms is None or ev.period is None:
            return self._store(tenant_id, event_id, decide(ev), granted=False)
        decision = self._reserve(tenant_id, ev, event, event_id)
        self._changed(Change(tenant_id, event.customer, plans=False))
        answer = self._store(tenant_id, event_id, decision, granted=decision.has_access)
        if decision.has_access and answer.status != 200:
            self._view.release(tenant_id, event.customer, event.meter, event_id)
        return answer

    def _reserve(
        self, tenant_id: int, ev: Evaluation, event: ConsumeEvent, event_id: str
    ) -> Decision:
        terms, period, meter = ev.terms, ev.period, event.meter
        assert terms is not None and period is not None
        blocking = terms.limit is not None and terms.overage.value == "block"
        limit = terms.limit if blocking else None
        customer, amount = event.customer, event.amount
        start, end = to_ms(period.start), to_ms(period.end)
        ask = (tenant_id, customer, meter, event_id, amount, limit, start, end, event.event_ms)
        try:
            held = self._view.reserve(*ask)
        except ViewNotReady:
            held = self._view.reserve(
                *ask, counted=self._counted_elsewhere(tenant_id, customer, meter, period)
            )
        decision = decide(ev, held.used, amount)
        if not held.granted:
            return replace(decision, has_access=False, reason=Reason.LIMIT_EXCEEDED)
        return replace(decision, used=exact_sum((held.used, amount)))

    def _store(self, tenant_id: int, event_id: str, decision: Decision, granted: bool) -> Answer:
        """Store the answer (first wins); a granted one is stored before its publish."""
        body = {**decision.as_dict(), "granted": granted, "event_id": event_id}
        answer = Answer(200 if granted else 403, body, published=not granted)
        return self._answers.decide(tenant_id, event_id, answer)

    def _publish(self, tenant_id: int, event_id: str, event: ConsumeEvent) -> None:
        """Publish the granted event (again, after an unknown fate); Unavailable on failure,
        with the reservation kept: the message may still be delivered. The id is marked in
        ingest's dedupe store first: the grant is already stored, so the id is the consume's
        even if this publish fails (its retry publishes it)."""
        e, now, props = event, self._clock.now_ms(), {RESERVATION_PROPERTY: True}
        ts = e.event_ms
        value = float(e.amount)  # exact: the amount passed the value rule
        usage = UsageEvent(tenant_id, event_id, e.customer, e.meter, value, ts, now, props)
        marked = self._ingested.mark(tenant_id, event_id)
        try:
            self._publisher.publish([usage], self.options.publish_timeout)
        except MeterlineError:
            raise
        except Exception as error:
            raise Unavailable("the usage was not acknowledged; retry with the event_id") from error
        finally:
            marked()
        self._answers.mark_published(tenant_id, event_id)


_FIELDS = {"id": "event_id", "customer": "customer", "value": "amount", "meter": "feature"}
