"""Customers, subscriptions, grants and consume answers: the interfaces and in-memory versions.

The Postgres versions (tables of migrations 0002 and 0004) are in `postgres.py`; one contract
test suite runs against both. Every method is tenant-scoped: a tenant never sees another's rows.
"""

from __future__ import annotations

import abc
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from meterline.entitlements.model import GRANT_KINDS, Customer, Grant, Subscription
from meterline.errors import Conflict, FieldError, NotFound, ValidationFailed
from meterline.values import exact, value_problem


@dataclass(frozen=True, slots=True)
class NewGrant:
    """A grant to add; validated by `check_grant`."""

    customer: str
    feature: str
    kind: str
    amount: Decimal | float | None = None
    effective_at: datetime | None = None
    expires_at: datetime | None = None
    note: str | None = None


def check_grant(g: NewGrant) -> None:
    """Raise ValidationFailed listing every problem of `g`."""
    errors = []
    if g.kind not in GRANT_KINDS:
        errors.append(FieldError("kind", f"must be one of {', '.join(GRANT_KINDS)}"))
    if g.amount is None and g.kind != "override":
        errors.append(FieldError("amount", "required for credits and top-ups"))
    if g.amount is not None and (problem := value_problem(g.amount)) is not None:
        errors.append(FieldError("amount", problem))
    if g.expires_at and g.effective_at and g.expires_at <= g.effective_at:
        errors.append(FieldError("expires_at", "must be after effective_at"))
    if errors:
        raise ValidationFailed(errors)


class CustomerRepository(abc.ABC):
    @abc.abstractmethod
    def create(
        self, tenant_id: int, customer: str, name: str | None, email: str | None
    ) -> Customer:
        """Raises Conflict when the customer exists."""

    @abc.abstractmethod
    def get(self, tenant_id: int, customer: str) -> Customer | None: ...

    @abc.abstractmethod
    def list(self, tenant_id: int, limit: int = 100, after: str | None = None) -> list[Customer]:
        """Customers ordered by id, at most `limit`, those after `after` (pagination)."""

    @abc.abstractmethod
    def set_stripe_id(self, tenant_id: int, customer: str, stripe_id: str) -> None:
        """Link the customer to its Stripe customer; raises NotFound for an unknown customer."""

    @abc.abstractmethod
    def by_stripe_id(self, stripe_id: str) -> Customer | None: ...

    def ensure(self, tenant_id: int, customer: str) -> Customer:
        """The customer, created (without name or email) when missing."""
        found = self.get(tenant_id, customer)
        if found is not None:
            return found
        try:
            return self.create(tenant_id, customer, None, None)
        except Conflict:
            again = self.get(tenant_id, customer)
            assert again is not None
            return again


class SubscriptionRepository(abc.ABC):
    @abc.abstractmethod
    def get(self, tenant_id: int, customer: str) -> Subscription | None: ...

    @abc.abstractmethod
    def put(self, sub: Subscription) -> None:
        """Insert or replace the customer's subscription (one per customer)."""

    @abc.abstractmethod
    def delete(self, tenant_id: int, customer: str) -> None:
        """Back to the default plan (manual subscriptions only; Stripe ones end by webhook)."""

    def get_many(self, tenant_id: int, customers: Sequence[str]) -> dict[str, Subscription]:
        """The subscriptions of those of `customers` that have one (Postgres: one query)."""
        found = {c: self.get(tenant_id, c) for c in customers}
        return {c: sub for c, sub in found.items() if sub is not None}


Grants = list[Grant]  # (named here: inside GrantRepository, `list` is its method)


class GrantRepository(abc.ABC):
    @abc.abstractmethod
    def add(self, tenant_id: int, grant: NewGrant) -> Grant:
        """Store a validated grant; raises NotFound for an unknown customer."""

    @abc.abstractmethod
    def list(self, tenant_id: int, customer: str, include_voided: bool = False) -> list[Grant]: ...

    @abc.abstractmethod
    def void(self, tenant_id: int, grant_id: int) -> Grant:
        """Void a grant from now on (kept for history); raises NotFound."""

    def list_many(self, tenant_id: int, customers: Sequence[str]) -> dict[str, Grants]:
        """`list` (without voided grants) of each customer (Postgres: one query)."""
        return {c: self.list(tenant_id, c) for c in customers}


@dataclass(frozen=True, slots=True)
class ConsumeEvent:
    """The usage one consume asks for, fixed by its first attempt: every retry of its
    `event_id` reserves and publishes exactly this (same amount, same timestamp)."""

    customer: str
    meter: str
    amount: Decimal
    event_ms: int


IdEvent = tuple[int, str, ConsumeEvent]
"""(tenant id, event_id, the event its consume asks for)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A stored answer; `published` is False while a granted event's publish has not been
    acknowledged (its fate unknown): the reservation stays and a retry publishes again."""

    status: int
    body: dict[str, Any]
    published: bool = True


@dataclass(frozen=True, slots=True)
class Claim:
    """What `AnswerStore.claim` found for an event id.

    `answer` set: answered already. Else `owner` True: this caller holds the claim and decides
    `event` (its own, or the first attempt's when it took over a lapsed claim); `owner` False:
    another caller holds a live claim (wait for its answer). `in_ledger`: whether the ledger
    held the id when it was claimed, where the store read it in the claim's own statement (one
    round trip for both); None: not read (`IngestedIds.held` reads it)."""

    event: ConsumeEvent
    answer: Answer | None
    owner: bool
    in_ledger: bool | None = field(default=None, compare=False)


class AnswerStore(abc.ABC):
    """One answer per consume `event_id`, so every repeat gets exactly the first answer.

    A consume first `claim`s its id (the event it asks for is stored with the claim), then
    `decide`s it; a granted answer is stored before its event is published and marked
    `published` after the broker acknowledged it. Granted answers whose events the ledger
    does not hold yet are the pending reservations a view rebuild restores."""

    @abc.abstractmethod
    def get(self, tenant_id: int, event_id: str) -> Answer | None:
        """The stored answer, or None (unknown or only claimed)."""

    @abc.abstractmethod
    def claim(self, tenant_id: int, event_id: str, event: ConsumeEvent, lease_s: float) -> Claim:
        """Claim `event_id` for `event`. A claim left undecided for `lease_s` (its holder
        crashed or stalls) is taken over by the next caller, with the event first stored."""

    @abc.abstractmethod
    def abandon(self, tenant_id: int, event_id: str) -> None:
        """Give up an undecided claim: the next `claim` takes it over at once, with the event
        first stored. No-op once answered."""

    @abc.abstractmethod
    def decide(self, tenant_id: int, event_id: str, answer: Answer) -> Answer:
        """Store `answer` unless one is stored already; return the stored one (first wins)."""

    @abc.abstractmethod
    def mark_published(self, tenant_id: int, event_id: str) -> None:
        """Record that the granted event of `event_id` was acknowledged by the broker."""

    def claim_many(self, asks: Sequence[IdEvent], lease_s: float) -> list[Claim]:
        """`claim` of each (tenant, event_id, event), in order; the ids must be distinct. A
        store that can claims them all in one step (Postgres: one statement for the new ids)."""
        return [self.claim(t, event_id, event, lease_s) for t, event_id, event in asks]

    def decide_many(self, answers: Sequence[tuple[int, str, Answer]]) -> list[Answer]:
        """`decide` of each (tenant, event_id, answer), in order (first wins for each)."""
        return [self.decide(t, event_id, answer) for t, event_id, answer in answers]

    def abandon_many(self, ids: Sequence[tuple[int, str]]) -> None:
        """`abandon` of each (tenant, event_id)."""
        for t, event_id in ids:
            self.abandon(t, event_id)

    @abc.abstractmethod
    def pending(
        self, tenant_id: int, customer: str, meter: str, start_ms: int, end_ms: int
    ) -> dict[str, Decimal]:
        """The granted amount per event id of the customer's meter, for events timed in
        [start, end) that the ledger does not hold yet (read while the view is not ready). The
        memory store has no ledger: it returns every grant."""


class MemoryCustomerRepository(CustomerRepository):
    def __init__(self) -> None:
        self._rows: dict[tuple[int, str], Customer] = {}
        self._lock = threading.Lock()

    def create(
        self, tenant_id: int, customer: str, name: str | None, email: str | None
    ) -> Customer:
        with self._lock:
            if (tenant_id, customer) in self._rows:
                raise Conflict(f"customer {customer!r} already exists")
            row = Customer(tenant_id, customer, None, name, email)
            self._rows[tenant_id, customer] = row
            return row

    def get(self, tenant_id: int, customer: str) -> Customer | None:
        return self._rows.get((tenant_id, customer))

    def list(self, tenant_id: int, limit: int = 100, after: str | None = None) -> list[Customer]:
        ids = sorted(c for t, c in self._rows if t == tenant_id and (after is None or c > after))
        return [self._rows[tenant_id, c] for c in ids[:limit]]

    def set_stripe_id(self, tenant_id: int, customer: str, stripe_id: str) -> None:
        with self._lock:
            row = self._rows.get((tenant_id, customer))
            if row is None:
                raise NotFound(f"no customer {customer!r}")
            self._rows[tenant_id, customer] = replace(row, stripe_customer_id=stripe_id)

    def by_stripe_id(self, stripe_id: str) -> Customer | None:
        return next((c for c in self._rows.values() if c.stripe_customer_id == stripe_id), None)


class MemorySubscriptionRepository(SubscriptionRepository):
    def __init__(self) -> None:
        self._rows: dict[tuple[int, str], Subscription] = {}

    def get(self, tenant_id: int, customer: str) -> Subscription | None:
        return self._rows.get((tenant_id, customer))

    def put(self, sub: Subscription) -> None:
        self._rows[sub.tenant_id, sub.customer] = sub

    def delete(self, tenant_id: int, customer: str) -> None:
        self._rows.pop((tenant_id, customer), None)


class MemoryGrantRepository(GrantRepository):
    def __init__(self, customers: CustomerRepository) -> None:
        self._customers = customers
        self._rows: dict[int, Grant] = {}
        self._lock = threading.Lock()

    def add(self, tenant_id: int, grant: NewGrant) -> Grant:
        check_grant(grant)
        if self._customers.get(tenant_id, grant.customer) is None:
            raise NotFound(f"no customer {grant.customer!r}")
        with self._lock:
            row = Grant(
                len(self._rows) + 1,
                tenant_id,
                grant.customer,
                grant.feature,
                grant.kind,
                exact(grant.amount),
                grant.effective_at or datetime.now(UTC),
                grant.expires_at,
                grant.note,
            )
            self._rows[row.id] = row
            return row

    def list(self, tenant_id: int, customer: str, include_voided: bool = False) -> list[Grant]:
        return [
            g
            for g in self._rows.values()
            if g.tenant_id == tenant_id
            and g.customer == customer
            and (include_voided or g.voided_at is None)
        ]

    def void(self, tenant_id: int, grant_id: int) -> Grant:
        row = self._rows.get(grant_id)
        if row is None or row.tenant_id != tenant_id:
            raise NotFound(f"no grant {grant_id}")
        row = replace(row, voided_at=row.voided_at or datetime.now(UTC))
        self._rows[grant_id] = row
        return row


class MemoryAnswerStore(AnswerStore):
    def __init__(self) -> None:
        self._rows: dict[tuple[int, str], _Row] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: int, event_id: str) -> Answer | None:
        row = self._rows.get((tenant_id, event_id))
        return None if row is None else row.answer

    def claim(self, tenant_id: int, event_id: str, event: ConsumeEvent, lease_s: float) -> Claim:
        now = time.monotonic()
        with self._lock:
            row = self._rows.get((tenant_id, event_id))
            if row is None:
                self._rows[tenant_id, event_id] = _Row(event, now)
                return Claim(event, None, owner=True)
            if row.answer is not None:
                return Claim(row.event, row.answer, owner=False)
            if row.claimed_at + lease_s <= now:
                row.claimed_at = now
                return Claim(row.event, None, owner=True)
            return Claim(row.event, None, owner=False)

    def abandon(self, tenant_id: int, event_id: str) -> None:
        with self._lock:
            row = self._rows.get((tenant_id, event_id))
            if row is not None and row.answer is None:
                row.claimed_at = -math.inf

    def decide(self, tenant_id: int, event_id: str, answer: Answer) -> Answer:
        with self._lock:
            row = self._rows[tenant_id, event_id]
            if row.answer is None:
                row.answer = answer
            return row.answer

    def mark_published(self, tenant_id: int, event_id: str) -> None:
        with self._lock:
            row = self._rows[tenant_id, event_id]
            if row.answer is not None:
                row.answer = replace(row.answer, published=True)

    def pending(
        self, tenant_id: int, customer: str, meter: str, start_ms: int, end_ms: int
    ) -> dict[str, Decimal]:
        return {
            event_id: row.event.amount
            for (t, event_id), row in list(self._rows.items())
            if t == tenant_id
            and (row.event.customer, row.event.meter) == (customer, meter)
            and start_ms <= row.event.event_ms < end_ms
            and row.answer is not None
            and row.answer.status == 200
        }


@dataclass
class _Row:
    event: ConsumeEvent
    claimed_at: float
    answer: Answer | None = None
