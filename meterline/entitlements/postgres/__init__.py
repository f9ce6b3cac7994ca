"""Postgres versions of the entitlement repositories (tables of migrations 0002 and 0004), and
the ingested ids as the ledger and ingest's dedupe store hold them. Consume answers:
`answers.py`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from meterline.dedupe import BlockingRedisDeduper, HeldIds
from meterline.entitlements.ids import IngestedIds, StoreGuard
from meterline.entitlements.model import Customer, Grant, Subscription
from meterline.entitlements.repository import (
    CustomerRepository,
    GrantRepository,
    Grants,
    NewGrant,
    SubscriptionRepository,
    check_grant,
)
from meterline.errors import Conflict, NotFound
from meterline.notify.announce import subscription_changed
from meterline.notify.outbox import publish
from meterline.postgres import autocommitted
from meterline.values import exact
from meterline.view import IdGuard

log = logging.getLogger(__name__)

_CUSTOMER_COLUMNS = "tenant_id, id, stripe_customer_id, name, email"
_IN_LEDGER = "SELECT 1 FROM usage_event_ids WHERE tenant_id = %s AND event_id = %s"
_GRANTED = """
SELECT event_id FROM entitlement_answers
WHERE tenant_id = %s AND event_id = ANY(%s) AND status = 200
"""
_GRANTED_WITHIN = """
SELECT event_id FROM entitlement_answers
WHERE tenant_id = %s AND status = 200 AND created_at >= now() - make_interval(secs => %s)
"""


class PostgresCustomerRepository(CustomerRepository):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def create(
        self, tenant_id: int, customer: str, name: str | None, email: str | None
    ) -> Customer:
        with self._pool.connection() as conn:
            try:
                conn.execute(
                    "INSERT INTO customers (tenant_id, id, name, email) VALUES (%s, %s, %s, %s)",
                    (tenant_id, customer, name, email),
                )
            except psycopg.errors.UniqueViolation:
                raise Conflict(f"customer {customer!r} already exists") from None
            except psycopg.errors.ForeignKeyViolation:
                raise NotFound(f"no tenant with id {tenant_id}") from None
        return Customer(tenant_id, customer, None, name, email)

    def get(self, tenant_id: int, customer: str) -> Customer | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE tenant_id = %s AND id = %s",
                (tenant_id, customer),
            ).fetchone()
        return None if row is None else Customer(*row)

    def list(self, tenant_id: int, limit: int = 100, after: str | None = None) -> list[Customer]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE tenant_id = %s "
                "AND (%s::text IS NULL OR id > %s) ORDER BY id LIMIT %s",
                (tenant_id, after, after, limit),
            ).fetchall()
        return [Customer(*r) for r in rows]

    def set_stripe_id(self, tenant_id: int, customer: str, stripe_id: str) -> None:
        with self._pool.connection() as conn:
            cur = conn.execute(
                "UPDATE customers SET stripe_customer_id = %s WHERE tenant_id = %s AND id = %s",
                (stripe_id, tenant_id, customer),
            )
        if cur.rowcount == 0:
            raise NotFound(f"no customer {customer!r}")

    def by_stripe_id(self, stripe_id: str) -> Customer | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE stripe_customer_id = %s",
                (stripe_id,),
            ).fetchone()
        return None if row is None else Customer(*row)


_SUB_COLUMNS = (
    "tenant_id, customer, plan, status, source, stripe_subscription_id, current_period_start, "
    "current_period_end, past_due_since, cancel_at_period_end, stripe_event_created"
)
_UPSERT_SUB = f"""
INSERT INTO subscriptions ({_SUB_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, customer) DO UPDATE SET
    plan = EXCLUDED.plan, status = EXCLUDED.status, source = EXCLUDED.source,
    stripe_subscription_id = EXCLUDED.stripe_subscription_id,
    current_period_start = EXCLUDED.current_period_start,
    current_period_end = EXCLUDED.current_period_end,
    past_due_since = EXCLUDED.past_due_since,
    cancel_at_period_end = EXCLUDED.cancel_at_period_end,
    stripe_event_created = EXCLUDED.stripe_event_created,
    updated_at = now()
"""


class PostgresSubscriptionRepository(SubscriptionRepository):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def get(self, tenant_id: int, customer: str) -> Subscription | None:
        with autocommitted(self._pool) as conn:
            row = conn.execute(
                f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE tenant_id = %s AND customer = %s",
                (tenant_id, customer),
            ).fetchone()
        return None if row is None else Subscription(*row)

    def get_many(self, tenant_id: int, customers: Sequence[str]) -> dict[str, Subscription]:
        with autocommitted(self._pool) as conn:
            rows = conn.execute(
                f"SELECT {_SUB_COLUMNS} FROM subscriptions "
                "WHERE tenant_id = %s AND customer = ANY(%s)",
                (tenant_id, list(customers)),
            ).fetchall()
        return {sub.customer: sub for sub in (Subscription(*r) for r in rows)}

    def put(self, sub: Subscription) -> None:
        """Write `sub`; a change of plan, status or period is announced (`subscription.changed`)
        in the same transaction."""
        values = (
            sub.tenant_id,
            sub.customer,
            sub.plan,
            sub.status,
            sub.source,
            sub.stripe_subscription_id,
            sub.current_period_start,
            sub.current_period_end,
            sub.past_due_since,
            sub.cancel_at_period_end,
            sub.stripe_event_created,
        )
        with self._pool.connection() as conn, conn.transaction():
            before = _locked_subscription(conn, sub.tenant_id, sub.customer)
            try:
                conn.execute(_UPSERT_SUB, values)
            except psycopg.errors.ForeignKeyViolation:
                raise NotFound(f"no customer {sub.customer!r}") from None
            _announce(conn, before, sub)

    def delete(self, tenant_id: int, customer: str) -> None:
        with self._pool.connection() as conn, conn.transaction():
            before = _locked_subscription(conn, tenant_id, customer)
            conn.execute(
                "DELETE FROM subscriptions WHERE tenant_id = %s AND customer = %s",
                (tenant_id, customer),
            )
            _announce(conn, before, None)


def _locked_subscription(
    conn: psycopg.Connection, tenant_id: int, customer: str
) -> Subscription | None:
    row = conn.execute(
        f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE tenant_id = %s AND customer = %s "
        "FOR UPDATE",
        (tenant_id, customer),
    ).fetchone()
    return None if row is None else Subscription(*row)


def _announce(
    conn: psycopg.Connection, before: Subscription | None, after: Subscription | None
) -> None:
    notification = subscription_changed(before, after)
    if notification is not None:
        publish(conn, notification)


_GRANT_COLUMNS = (
    "id, tenant_id, customer, feature, kind, amount, effective_at, expires_at, note, voided_at"
)


def insert_grant(conn: psycopg.Connection[Any], tenant_id: int, grant: NewGrant) -> Grant:
    """Insert one checked grant on `conn` (inside the caller's transaction, if any)."""
    check_grant(grant)
    g = grant
    extra = (g.expires_at, g.note)
    try:
        row = conn.execute(
            "INSERT INTO grants (tenant_id, customer, feature, kind, amount, effective_at, "
            "expires_at, note) VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()), %s, %s) "
            f"RETURNING {_GRANT_COLUMNS}",
            (tenant_id, g.customer, g.feature, g.kind, exact(g.amount), g.effective_at, *extra),
        ).fetchone()
    except psycopg.errors.ForeignKeyViolation:
        raise NotFound(f"no customer {g.customer!r}") from None
    assert row is not None
    return Grant(*row)


class PostgresGrantRepository(GrantRepository):
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def add(self, tenant_id: int, grant: NewGrant) -> Grant:
        with self._pool.connection() as conn:
            return insert_grant(conn, tenant_id, grant)

    def list(self, tenant_id: int, customer: str, include_voided: bool = False) -> list[Grant]:
        with autocommitted(self._pool) as conn:
            rows = conn.execute(
                f"SELECT {_GRANT_COLUMNS} FROM grants WHERE tenant_id = %s AND customer = %s "
                "AND (%s OR voided_at IS NULL) ORDER BY id",
                (tenant_id, customer, include_voided),
            ).fetchall()
        return [Grant(*r) for r in rows]

    def list_many(self, tenant_id: int, customers: Sequence[str]) -> dict[str, Grants]:
        found: dict[str, Grants] = {c: [] for c in customers}
        with autocommitted(self._pool) as conn:
            rows = conn.execute(
                f"SELECT {_GRANT_COLUMNS} FROM grants WHERE tenant_id = %s "
                "AND customer = ANY(%s) AND voided_at IS NULL ORDER BY id",
                (tenant_id, list(found)),
            ).fetchall()
        for grant in (Grant(*r) for r in rows):
            found[grant.customer].append(grant)
        return found

    def void(self, tenant_id: int, grant_id: int) -> Grant:
        with self._pool.connection() as conn:
            row = conn.execute(
                "UPDATE grants SET voided_at = coalesce(voided_at, now()) "
                f"WHERE tenant_id = %s AND id = %s RETURNING {_GRANT_COLUMNS}",
                (tenant_id, grant_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"no grant {grant_id}")
        return Grant(*row)


class LedgerIngestedIds(IngestedIds):
    """The ledger's identities (`usage_event_ids`) and ingest's dedupe store, both asked from
    the calling thread (a blocking client: no hop to an event loop).

    A dedupe store that fails or times out (its client's socket timeout) counts as "not seen",
    as in ingest."""

    def __init__(self, pool: ConnectionPool[Any], deduper: BlockingRedisDeduper) -> None:
        self._pool = pool
        self._deduper = deduper

    def held(self, tenant_id: int, event_id: str, in_ledger: bool | None = None) -> bool:
        if in_ledger is None:
            with autocommitted(self._pool) as conn:
                in_ledger = conn.execute(_IN_LEDGER, (tenant_id, event_id)).fetchone() is not None
        if in_ledger:
            return True
        try:
            return bool(self._deduper.seen(tenant_id, [event_id])[0])
        except Exception:
            log.warning("dedupe store did not answer; the ledger decided", exc_info=True)
            return False

    def held_many(self, asks: Sequence[tuple[int, str, bool | None]]) -> list[bool]:
        """Ids the ledger did not hold are asked of the dedupe store in one call per tenant."""
        if any(in_ledger is None for _, _, in_ledger in asks):
            return super().held_many(asks)
        ask: dict[int, list[str]] = {}
        for tenant_id, event_id, in_ledger in asks:
            if not in_ledger:
                ask.setdefault(tenant_id, []).append(event_id)
        seen: set[tuple[int, str]] = set()
        for tenant_id, ids in ask.items():
            try:
                flags = self._deduper.seen(tenant_id, ids)
            except Exception:
                log.warning("dedupe store did not answer; the ledger decided", exc_info=True)
                continue
            seen.update((tenant_id, i) for i, flag in zip(ids, flags, strict=True) if flag)
        return [bool(in_ledger) or (t, e) in seen for t, e, in_ledger in asks]

    def mark_many(self, ids: Sequence[tuple[int, str]]) -> None:
        """One dedupe store call per tenant."""
        by_tenant: dict[int, list[str]] = {}
        for tenant_id, event_id in ids:
            by_tenant.setdefault(tenant_id, []).append(event_id)
        for tenant_id, event_ids in by_tenant.items():
            try:
                self._deduper.mark(tenant_id, event_ids)
            except Exception:
                log.warning("dedupe store did not take a consume's id", exc_info=True)

    def guard(self) -> IdGuard:
        """The dedupe store's own check, run inside each reservation's script by a Redis view
        (one round trip for the check and the reservations); `held_many` when it cannot."""
        return _DedupeGuard(self, self._deduper)

    def mark(self, tenant_id: int, event_id: str) -> Callable[[], None]:
        """Written at once (one Redis round trip); the waiter returned has nothing to wait."""
        try:
            self._deduper.mark(tenant_id, [event_id])
        except Exception:
            log.warning("dedupe store did not take a consume's id", exc_info=True)
        return _written


def _written() -> None:
    pass


class _DedupeGuard(StoreGuard):
    def __init__(self, ids: IngestedIds, deduper: BlockingRedisDeduper) -> None:
        super().__init__(ids)
        self._lua = deduper.guard_lua()
        self._head = deduper.head

    def script(self) -> str:
        return self._lua

    def head(self, tenant_id: int) -> str:
        return self._head(tenant_id)


class GrantedIds(HeldIds):
    """The ids consume granted (`entitlement_answers`): ingest's durable record of the ids it
    must answer as duplicates when its dedupe store may have lost their marks."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self._pool = pool

    def held(self, tenant_id: int, ids: Sequence[str]) -> set[str]:
        with autocommitted(self._pool) as conn:
            return {str(r[0]) for r in conn.execute(_GRANTED, (tenant_id, list(ids)))}

    def within(self, tenant_id: int, seconds: float) -> list[str]:
        with self._pool.connection() as conn:
            return [str(r[0]) for r in conn.execute(_GRANTED_WITHIN, (tenant_id, seconds))]
