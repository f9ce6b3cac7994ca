"""Consume, the atomic check-and-record, for one request or a batch of concurrent ones.

One `event_id`, one answer, one event, counted once. In order:

1. **Validate** with ingest's own `validate_event` (`event_id` as `id`, the customer, `amount` as
   `value`): the same lengths, no control characters, `amount` a JSON number under the value
   rule of `meterline/values.py` (0 to 1e15, at most 6 decimals and 15 significant digits; a
   string or a boolean is refused). Limits, usage and amounts are exact decimals from here on:
   `used + amount <= limit` never meets a binary float. Errors name `event_id`, `customer` and
   `amount`. So nothing consume grants can be sent to the dead-letter topic by the aggregator.
2. **Claim** the id in `entitlement_answers` (migration 0009) together with the event it asks
   for: customer, meter, amount and the timestamp of this first attempt, which is the instant
   its usage is attributed to (`meterline.view.attributed_ms`: now clamped into the minutes of
   the feature's period, see meterline/view/README.md "The period rule"). Every later attempt
   with that id (a retry, a concurrent request with another amount) uses this stored event, so
   a retry keeps its first timestamp (issue 19 item 1), reserves and publishes at that same
   instant, and is counted in the minute and period it was checked against; and concurrent
   consumes of one id cannot inflate `used`: the others poll for the first one's answer
   (`claim_wait_s`, then 503). A claim whose decision fails (Redis or Postgres error) is given
   up at once, and one left undecided for `claim_lease_s` (its holder crashed) lapses: either
   way a retry takes it over, with the stored event.
3. **One id space with ingest**: an id ingest already holds (counted: in `usage_event_ids`, or
   accepted within ingest's dedupe window) answers `409` and reserves nothing (stored: every
   repeat gets it; the claim's own statement reads the ledger, then each reservation's own
   script asks the dedupe store first, `meterline.view.IdGuard`, so the check costs no round
   trip of its own); once a grant is stored, consume marks ingest's dedupe store with the id
   (before publishing, so a publish of unknown fate is covered too), and ingest answers a
   later event with that id as a duplicate. So what is answered is what is counted. The mark
   waits for the stored answer on purpose: marked with the reservation, a failed answers
   statement (or a crash) would leave ingest refusing a later event with that id as a
   duplicate while nothing with it is ever counted, and a retry would find the mark and
   answer 409 (`test_a_failed_answers_statement_marks_nothing_and_a_retry_grants_and_publishes`).
4. **Reserve** (one Lua step in Redis per consume) counts period usage + pending reservations
   and grants iff the amount fits a blocking limit (unlimited / overage `allow` reserve without
   a limit). The stored timestamp is the reservation's time (the period is evaluated at it),
   and the reservation never lapses: it is removed when its id is counted (in the aggregator's
   Redis step for the batch that holds its event, even when that event is a copy of one
   counted first) or by a rebuild that finds it counted.
5. **Store** the answer (first wins); a grant is stored *before* its publish, with
   `published = false`. Granted answers whose ids are not counted (`usage_event_ids`) are the
   pending reservations: `meterline.view.postgres.rebuild` restores them into Redis after a
   flush, so Redis never holds their only copy.
6. **Publish** the event (id = `event_id`, the stored timestamp, property
   `meterline_reservation: true`), then mark the answer published (flags are written in
   batches every 20 ms, `published.py`: a flag not written yet only makes a retry publish the
   same event again, which the ledger counts once). A publish that fails or times out answers
   503 and keeps the reservation and the answer: the producer may still deliver the message,
   so releasing would open an over-grant window and bill a request answered 503. A retry with
   the same `event_id` publishes the same event again (the ledger counts it once) and returns
   the stored answer.

**Batches** (`consume_many`, what the HTTP layer calls with the consumes that arrived while the
previous batches were being decided): every step above runs once for the whole batch where the
store allows it, and each consume keeps its own answer. One statement claims every new id and
reads the ledger for them (an index probe per id, whatever the ledger's size, and planned at
each call: `postgres/answers.py`); one Redis pipeline carries every reservation (each still its
own atomic script, run in order, that asks ingest's dedupe store for its id first, so the limit
holds exactly as if they had come one by one); consumes that reserve nothing (no limit terms,
an error) ask the dedupe store apart, one call per tenant; one statement stores every answer;
one dedupe call marks the granted ids; one publish call produces every granted event and waits
for their acknowledgements (the consume producer does not linger: the batch is its request). So
a batch's answers wait for five round trips in turn, and a consume also for a slot
(`entitlements_api/batching.py`), which a batch holds until it ends, the broker's
acknowledgement included (freeing it before that wait made batches smaller and consumes
slower); each step is timed per batch in bench/HISTORY.md, with what is left to cut. A step
that fails for the batch fails every consume of it that it concerned (each claim given up,
reservations kept, as for one consume); a consume whose own step fails (a feature the view is
not ready for, an error of its own) fails alone. A repeat of an `event_id` within one batch is
answered after the first, as a concurrent repeat; a consume whose id another caller holds waits
for that answer only after the rest of its batch has been answered (`on_outcomes`), so it never
delays them. Publishing a batch at once means a failed or timed-out publish answers 503 to
every granted consume of the batch (their fates are unknown alike; each retry publishes its own
event again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from meterline.catalog import FeatureKind
from meterline.catalog.aggregation import RULES, Combine
from meterline.clock import from_ms, to_ms
from meterline.entitlements.decide import Evaluation, decide
from meterline.entitlements.invalidation import Change
from meterline.entitlements.model import Decision, Reason
from meterline.entitlements.repository import Answer, Claim, ConsumeEvent, IdEvent
from meterline.errors import FieldError, MeterlineError, NotFound, Unavailable, ValidationFailed
from meterline.events import (
    MAX_ID_LEN,
    RESERVATION_PROPERTY,
    Rules,
    UsageEvent,
    validate_event,
)
from meterline.inputs import has_control
from meterline.values import exact_sum, to_decimal
from meterline.view import IdHeld, Reservation, ReserveAsk, ViewNotReady, attributed_ms

if TYPE_CHECKING:
    from meterline.entitlements.service import EntitlementService


@dataclass(frozen=True, slots=True)
class ConsumeAsk:
    """One consume request as received: `amount` and `event_id` as the caller sent them."""

    tenant_id: int
    customer: str
    feature: str
    amount: object
    event_id: object


Outcome = tuple[int, dict[str, Any]] | Exception
"""(status, body) of an answered consume, or the error it raised (each consume its own)."""
_Settle = Callable[[int, Outcome], None]
OnOutcomes = Callable[[list[tuple[int, Outcome]]], None]
"""Told (index in the batch, outcome) of the consumes whose outcomes are known, in groups."""

log = logging.getLogger(__name__)
_FIELDS = {"id": "event_id", "customer": "customer", "value": "amount", "meter": "feature"}


@dataclass(eq=False)
class _Item:
    """One consume of a batch on its way: its request, its validated first event and claim
    (compared and hashed by identity)."""

    index: int
    ask: ConsumeAsk
    event_id: str
    first: ConsumeEvent
    claim: Claim | None = None
    answer: Answer | None = None
    evaluation: Evaluation | None = None  # the feature at the event's time, once known

    @property
    def key(self) -> tuple[int, str]:
        return self.ask.tenant_id, self.event_id

    @property
    def event(self) -> ConsumeEvent:
        return self.claim.event if self.claim is not None else self.first


class Consumes:
    """The consume flow of an `EntitlementService` (see the module docstring)."""

    def __init__(self, service: EntitlementService) -> None:
        self._s = service

    def consume_many(
        self, asks: Sequence[ConsumeAsk], on_outcomes: OnOutcomes | None = None
    ) -> list[Outcome]:
        """Each ask's outcome, in order: (200, granted decision), (403, refused decision),
        (409, the id is ingest's), or the error it raised (ValidationFailed, NotFound,
        Unavailable, ...). `on_outcomes` is told them in groups as soon as they are known:
        the batch's, then each consume that waited for another caller's claim, then each
        repeat of an id within the batch. Blocks on Redis, Postgres and Kafka; never raises
        for one ask's failure."""
        outcomes: dict[int, Outcome] = {}
        known: list[tuple[int, Outcome]] = []

        def settle(index: int, outcome: Outcome) -> None:
            outcomes[index] = outcome
            known.append((index, outcome))

        def tell() -> None:
            if on_outcomes is not None and known:
                on_outcomes(list(known))
            known.clear()

        self._preload(asks)
        items, repeats = self._validated(asks, settle)
        waiting = self._claimed(items, settle)
        self._finish([i for i in items if i.index not in outcomes and i not in waiting], settle)
        tell()
        for item in waiting:
            self._finish_waiting(item, settle)
            tell()
        for index in repeats:
            settle(index, self.consume_many([asks[index]])[0])
            tell()
        return [outcomes[i] for i in range(len(asks))]

    def _preload(self, asks: Sequence[ConsumeAsk]) -> None:
        """Plan data of the batch's customers not cached, read together per tenant (a
        failure only logs: each consume then reads its own and meets the error itself)."""
        by_tenant: dict[int, set[str]] = {}
        for ask in asks:
            c = ask.customer
            if isinstance(c, str) and 0 < len(c) <= MAX_ID_LEN and not has_control(c):
                by_tenant.setdefault(ask.tenant_id, set()).add(c)
        for tenant_id, customers in by_tenant.items():
            try:
                self._s.preload_plans(tenant_id, customers)
            except MeterlineError:
                continue  # no catalog yet: each consume answers that itself
            except Exception:
                log.warning("plan data of a batch not read together", exc_info=True)

    def _validated(
        self, asks: Sequence[ConsumeAsk], settle: _Settle
    ) -> tuple[list[_Item], list[int]]:
        """The valid asks as items (one per id), and the indexes of repeats of an id."""
        items, repeats, ids = [], [], set()
        for index, ask in enumerate(asks):
            try:
                first, evaluation = self._first_event(ask)
            except Exception as error:
                settle(index, error)
                continue
            assert isinstance(ask.event_id, str)
            if (ask.tenant_id, ask.event_id) in ids:
                repeats.append(index)
                continue
            ids.add((ask.tenant_id, ask.event_id))
            items.append(_Item(index, ask, ask.event_id, first, evaluation=evaluation))
        return items, repeats

    def _claimed(self, items: list[_Item], settle: _Settle) -> list[_Item]:
        """Claim every item's id (one statement); returns those another caller holds."""
        asks: list[IdEvent] = [(i.ask.tenant_id, i.event_id, i.first) for i in items]
        lease = self._s.options.claim_lease_s
        try:
            claims = self._s.answers.claim_many(asks, lease)
        except Exception as error:
            for item in items:
                settle(item.index, error)
            return []
        waiting = []
        for item, claim in zip(items, claims, strict=True):
            item.claim, item.answer = claim, claim.answer
            if not claim.owner and claim.answer is None:
                waiting.append(item)
        return waiting

    def _finish(self, items: list[_Item], settle: _Settle) -> None:
        """Decide the owned items, publish what is granted and unpublished, announce."""
        owned = [i for i in items if i.answer is None]
        for item, failure in self._decide_or_abandon(owned).items():
            settle(item.index, failure)
        answered = [i for i in items if i.answer is not None]
        failed = self._publish([i for i in answered if _unpublished(i.answer)])
        for item in answered:
            assert item.answer is not None
            error: Exception | None = failed.get(item.index) or self._announce(item)
            settle(item.index, error or (item.answer.status, item.answer.body))

    def _finish_waiting(self, item: _Item, settle: _Settle) -> None:
        """Wait for the claim's holder to answer (or its claim to lapse), then finish."""
        try:
            item.claim = self._wait(item)
        except Exception as error:
            settle(item.index, error)
            return
        item.answer = item.claim.answer
        self._finish([item], settle)

    def _wait(self, item: _Item) -> Claim:
        """Poll the claim of another caller until it is answered or lapses (then ours)."""
        deadline = time.monotonic() + self._s.options.claim_wait_s
        lease = self._s.options.claim_lease_s
        while True:
            time.sleep(0.005)
            claim = self._s.answers.claim(item.ask.tenant_id, item.event_id, item.first, lease)
            if claim.owner or claim.answer is not None:
                return claim
            if time.monotonic() > deadline:
                raise Unavailable("another consume of this event_id is still deciding; retry")

    def _first_event(self, ask: ConsumeAsk) -> tuple[ConsumeEvent, Evaluation | None]:
        """The event this consume asks for, validated by ingest's own rules, timed at the
        instant its usage is attributed to (`attributed_ms`: now clamped into the minutes of
        the feature's period). The claim stores that instant as the event's first timestamp,
        so every retry reserves at it and publishes it, and the event counts in the minute
        and period its reservation was checked against. With it, the feature's evaluation at
        that instant when it is now (None: evaluate at the event's time)."""
        tenant_id = ask.tenant_id
        meter = self._metered(tenant_id, ask.feature)
        now = self._s.clock.now_ms()
        raw = {"id": ask.event_id, "customer": ask.customer, "meter": meter, "value": ask.amount}
        checked = validate_event(raw, tenant_id, Rules(now, (meter,)))
        if isinstance(checked, list):
            raise ValidationFailed([FieldError(_FIELDS[e.field], e.message) for e in checked])
        if checked.value != 1 and RULES[self._s.aggregation(tenant_id, meter)].counts_events:
            raise ValidationFailed([FieldError("amount", "must be 1: a count meter counts events")])
        ev = self._s.evaluate(tenant_id, checked.customer, ask.feature, from_ms(now))
        period = ev.period
        at = now if period is None else attributed_ms(now, to_ms(period.start), to_ms(period.end))
        event = ConsumeEvent(checked.customer, meter, to_decimal(checked.value), at)
        return event, ev if at == now else None

    def _metered(self, tenant_id: int, feature: str) -> str:
        found = self._s.catalog(tenant_id).feature(feature)
        if found is None:
            raise NotFound(f"unknown feature {feature[:64]!r}: not in this tenant's catalog")
        if found.kind is not FeatureKind.METERED or found.meter is None:
            raise ValidationFailed([FieldError("feature", "only metered features are consumed")])
        if RULES[self._s.aggregation(tenant_id, found.meter)].over_time is not Combine.ADD:
            raise ValidationFailed(
                [FieldError("feature", "only features on a sum or count meter are consumed")]
            )
        return found.meter

    def _decide_or_abandon(self, items: list[_Item]) -> dict[_Item, Exception]:
        """Decide the claimed items (sets `answer`); the errors of those that failed, whose
        claims are given up at once (their events kept), so a retry takes them over instead
        of waiting for the lease to lapse."""
        if not items:
            return {}
        try:
            failed = self._decide(items)
        except Exception as error:
            failed = {item: error for item in items if item.answer is None}
        if failed:
            with suppress(Exception):
                self._s.answers.abandon_many([item.key for item in failed])
        return failed

    def _decide(self, items: list[_Item]) -> dict[_Item, Exception]:
        """Answer each item: 409 when ingest holds its id (the ledger, read by the claim, or
        the dedupe store, asked in the reservations' own round trip), else decided."""
        answers: dict[_Item, Answer] = {}
        failed: dict[_Item, Exception] = {}
        reserving: list[_Item] = []
        unreserved: list[_Item] = []  # decided without a reservation, or failed: asked apart
        for item in self._unheld(items, answers):
            try:
                ev = self._evaluation(item)
            except Exception as error:
                failed[item] = error
                unreserved.append(item)
                continue
            if ev.terms is None or ev.period is None:
                answers[item] = _answer(item.event_id, decide(ev), granted=False)
                unreserved.append(item)
            else:
                item.evaluation = ev
                reserving.append(item)
        self._refuse_held(unreserved, answers, failed)
        for item, outcome in self._reserve(reserving).items():
            if isinstance(outcome, Exception):
                failed[item] = outcome
            elif isinstance(outcome, IdHeld):
                answers[item] = _conflict(item.event_id)
            else:
                answers[item] = _answer(item.event_id, outcome, granted=outcome.has_access)
        for tenant_id, customer in {(i.ask.tenant_id, i.event.customer) for i in reserving}:
            self._s.changed(Change(tenant_id, customer, plans=False))
        self._store(answers)
        return failed

    def _unheld(self, items: list[_Item], answers: dict[_Item, Answer]) -> list[_Item]:
        """The items whose ids the ledger does not hold (a 409 in `answers` for the others);
        an item whose claim did not read the ledger is asked the whole `held` here."""
        unread = [i for i in items if i.claim is None or i.claim.in_ledger is None]
        held = set()
        if unread:
            asks = [(i.ask.tenant_id, i.event_id, None) for i in unread]
            flags = self._s.ingested.held_many(asks)
            held = {i for i, flag in zip(unread, flags, strict=True) if flag}
        rest = []
        for item in items:
            if item in held or (item.claim is not None and item.claim.in_ledger):
                answers[item] = _conflict(item.event_id)
            else:
                rest.append(item)
        return rest

    def _refuse_held(
        self, items: list[_Item], answers: dict[_Item, Answer], failed: dict[_Item, Exception]
    ) -> None:
        """Ask the dedupe store for the items that reserve nothing (one call per tenant); a
        held one answers 409, whatever it was decided or failed with."""
        if not items:
            return
        flags = self._s.ingested.held_many([(i.ask.tenant_id, i.event_id, False) for i in items])
        for item, flag in zip(items, flags, strict=True):
            if flag:
                failed.pop(item, None)
                answers[item] = _conflict(item.event_id)

    def _evaluation(self, item: _Item) -> Evaluation:
        """The feature's evaluation at the event's time: the one made while validating when
        the event is this consume's own (a new claim, timed now), else made here."""
        own = item.claim is not None and item.claim.event is item.first
        if own and item.evaluation is not None:
            return item.evaluation
        e = item.event
        return self._s.evaluate(
            item.ask.tenant_id, e.customer, item.ask.feature, from_ms(e.event_ms)
        )

    def _reserve(self, items: list[_Item]) -> dict[_Item, Decision | IdHeld | Exception]:
        """Every item's reservation in one `reserve_many`, guarded by ingest's dedupe store
        (an id it holds reserves nothing: IdHeld); an item the view is not ready for is asked
        again alone with what Postgres counts (`counted_elsewhere`)."""
        asks = [self._reserve_ask(item) for item in items]
        held = self._s.view.reserve_many(asks, self._s.ingested.guard()) if asks else []
        decided: dict[_Item, Decision | IdHeld | Exception] = {}
        for item, ask, outcome in zip(items, asks, held, strict=True):
            if isinstance(outcome, IdHeld):
                decided[item] = outcome
                continue
            try:
                if isinstance(outcome, ViewNotReady):
                    outcome = self._reserve_counted(item, ask)
                if isinstance(outcome, Exception):
                    raise outcome
                decided[item] = _decision(item, outcome)
            except Exception as error:
                decided[item] = error
        return decided

    def _reserve_ask(self, item: _Item) -> ReserveAsk:
        ev, event = item.evaluation, item.event
        assert ev is not None and ev.terms is not None and ev.period is not None
        terms = ev.terms
        blocking = terms.limit is not None and terms.overage.value == "block"
        limit = terms.limit if blocking else None
        start, end = to_ms(ev.period.start), to_ms(ev.period.end)
        return ReserveAsk(
            item.ask.tenant_id, event.customer, event.meter, item.event_id, event.amount,
            limit, start, end, event.event_ms,
        )  # fmt: skip

    def _reserve_counted(self, item: _Item, ask: ReserveAsk) -> Reservation:
        assert item.evaluation is not None and item.evaluation.period is not None
        period, a = item.evaluation.period, ask
        counted = self._s.counted_elsewhere(a.tenant_id, a.customer, a.meter, period)
        args = (a.tenant_id, a.customer, a.meter, a.event_id, a.amount, a.limit)
        return self._s.view.reserve(*args, a.start_ms, a.end_ms, a.at_ms, counted)

    def _store(self, answers: dict[_Item, Answer]) -> None:
        """Store every answer (first wins; a grant before its publish); a grant that lost to
        an answer stored first gives its reservation back."""
        if not answers:
            return
        rows = [(item.ask.tenant_id, item.event_id, answer) for item, answer in answers.items()]
        stored = self._s.answers.decide_many(rows)
        for (item, mine), answer in zip(answers.items(), stored, strict=True):
            item.answer = answer
            if mine.status == 200 and answer.status != 200:
                e = item.event
                self._s.view.release(item.ask.tenant_id, e.customer, e.meter, item.event_id)

    def _publish(self, items: list[_Item]) -> dict[int, Exception]:
        """Publish the granted events of `items` (again, after an unknown fate) in one call;
        every item's error when it fails, with the reservations kept: the messages may still
        be delivered. The ids are marked in ingest's dedupe store first: the grants are
        stored, so the ids are the consumes' even if this publish fails."""
        if not items:
            return {}
        now, props = self._s.clock.now_ms(), {RESERVATION_PROPERTY: True}
        events = []
        for item in items:
            e = item.event
            value = float(e.amount)  # exact: the amount passed the value rule
            args = (item.event_id, e.customer, e.meter, value, e.event_ms, now, props)
            events.append(UsageEvent(item.ask.tenant_id, *args))
        self._s.ingested.mark_many([item.key for item in items])
        try:
            self._s.publisher.publish(events, self._s.options.publish_timeout)
        except Exception as error:
            failure = error if isinstance(error, MeterlineError) else _unacknowledged(error)
            return {item.index: failure for item in items}
        for item in items:
            self._s.answers.mark_published(*item.key)
        return {}

    def _announce(self, item: _Item) -> Exception | None:
        """Record the thresholds and limit notices the answer shows (`thresholds.py`), on every
        answer, repeats included: a notice lost to a failure here is written by the retry.
        Unavailable when they cannot be recorded (the answer stands; retry the event_id)."""
        answer, notifier = item.answer, self._s.notifier
        if notifier is None or answer is None or answer.status not in (200, 403):
            return None
        tenant_id = item.ask.tenant_id
        percents = self._s.thresholds(tenant_id, answer.body.get("plan"), answer.body["feature"])
        try:
            notifier.announce(tenant_id, item.event.customer, answer.body, percents)
        except MeterlineError as error:
            return error
        except Exception as error:
            message = "the answer's notices were not recorded; retry the event_id"
            failure = Unavailable(message)
            failure.__cause__ = error
            return failure
        return None


def _decision(item: _Item, held: Reservation) -> Decision:
    assert item.evaluation is not None
    amount = item.event.amount
    decision = decide(item.evaluation, held.used, amount)
    if not held.granted:
        return replace(decision, has_access=False, reason=Reason.LIMIT_EXCEEDED)
    return replace(decision, used=exact_sum((held.used, amount)))


def _answer(event_id: str, decision: Decision, granted: bool) -> Answer:
    body = {**decision.as_dict(), "granted": granted, "event_id": event_id}
    return Answer(200 if granted else 403, body, published=not granted)


def _conflict(event_id: str) -> Answer:
    message = f"event_id {event_id!r} is already used by an ingested event"
    body = {"error": "conflict", "message": message, "granted": False, "event_id": event_id}
    return Answer(409, body)


def _unpublished(answer: Answer | None) -> bool:
    return answer is not None and answer.status == 200 and not answer.published


def _unacknowledged(error: Exception) -> Unavailable:
    failure = Unavailable("the usage was not acknowledged; retry with the event_id")
    failure.__cause__ = error
    return failure
