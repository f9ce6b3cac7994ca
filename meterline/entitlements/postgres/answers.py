"""`PostgresAnswerStore`: consume answers and claims in `entitlement_answers` (migrations 0004,
0009 and 0017), one id at a time or a batch in one statement (`../consume.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from meterline.entitlements.published import PublishedFlags
from meterline.entitlements.repository import (
    Answer,
    AnswerStore,
    Claim,
    ConsumeEvent,
    IdEvent,
)
from meterline.postgres import autocommitted
from meterline.values import dumps, loads

_CLAIM = """
WITH claimed AS (
  INSERT INTO entitlement_answers
    (tenant_id, event_id, customer, meter, amount, event_ms, claimed_at)
  VALUES (%(t)s, %(e)s, %(customer)s, %(meter)s, %(amount)s, %(ms)s, now())
  ON CONFLICT DO NOTHING RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM claimed),
       EXISTS (SELECT 1 FROM usage_event_ids WHERE tenant_id = %(t)s AND event_id = %(e)s)
"""
_READ = """
SELECT status, body::text, published, customer, meter, amount, event_ms,
       claimed_at < now() - make_interval(secs => %s)
FROM entitlement_answers WHERE tenant_id = %s AND event_id = %s
"""
_TAKE_OVER = """
UPDATE entitlement_answers SET claimed_at = now()
WHERE tenant_id = %s AND event_id = %s AND status IS NULL
  AND claimed_at < now() - make_interval(secs => %s)
RETURNING 1
"""
_PENDING = """
SELECT a.event_id, a.amount FROM entitlement_answers a
WHERE a.status = 200 AND a.tenant_id = %s AND a.customer = %s AND a.meter = %s
  AND a.event_ms >= %s AND a.event_ms < %s
  AND NOT EXISTS (
    SELECT 1 FROM usage_event_ids i WHERE i.tenant_id = a.tenant_id AND i.event_id = a.event_id
  )
"""
_DECIDE = """
UPDATE entitlement_answers SET status = %s, body = %s, published = %s
WHERE tenant_id = %s AND event_id = %s AND status IS NULL RETURNING 1
"""

# Batches travel as one JSON document (json_to_recordset): psycopg dumps Python lists into
# Postgres arrays element by element, which cost more CPU than the rest of a batch's statement.
# The planner takes json_to_recordset for 100 rows, and for 100 probes it prefers hashing a
# whole table that is not large yet: each claim read all of `usage_event_ids` (in a fresh stack
# under load, until the table held some 60k ids), and cost more as the ledger grew. So it is
# probed per id (LATERAL ... LIMIT 1: an index lookup, never hashed), and the batch statements
# are planned at each call (`_UNPREPARED`), so that no plan cached while a table was small
# outlives it.
_CLAIM_MANY = """
WITH asked AS (
  SELECT * FROM json_to_recordset(%s::json)
    AS a(tenant_id bigint, event_id text, customer text, meter text, amount numeric,
         event_ms bigint)
),
claimed AS (
  INSERT INTO entitlement_answers
    (tenant_id, event_id, customer, meter, amount, event_ms, claimed_at)
  SELECT tenant_id, event_id, customer, meter, amount, event_ms, now() FROM asked
  ON CONFLICT DO NOTHING RETURNING tenant_id, event_id
)
SELECT a.tenant_id, a.event_id,
       EXISTS (SELECT 1 FROM claimed c WHERE (c.tenant_id, c.event_id) = (a.tenant_id, a.event_id)),
       counted.id IS NOT NULL
FROM asked a
LEFT JOIN LATERAL (
  SELECT 1 AS id FROM usage_event_ids i
  WHERE i.tenant_id = a.tenant_id AND i.event_id = a.event_id LIMIT 1
) counted ON true
"""
# An UPDATE cannot probe per row (LATERAL): its rows are found by the key's index through
# `= ANY` of the batch's tenants and ids, which the planner cannot hash the table against.
_BY_KEY = """
  AND a.tenant_id = ANY (ARRAY(SELECT tenant_id FROM v))
  AND a.event_id = ANY (ARRAY(SELECT event_id FROM v))
"""
_DECIDE_MANY = f"""
WITH v AS MATERIALIZED (
  SELECT * FROM json_to_recordset(%s::json)
    AS v(tenant_id bigint, event_id text, status smallint, body jsonb, published boolean)
)
UPDATE entitlement_answers a SET status = v.status, body = v.body, published = v.published
FROM v
WHERE a.tenant_id = v.tenant_id AND a.event_id = v.event_id AND a.status IS NULL {_BY_KEY}
RETURNING a.tenant_id, a.event_id
"""
_ABANDON_MANY = f"""
WITH v AS MATERIALIZED (
  SELECT * FROM json_to_recordset(%s::json) AS v(tenant_id bigint, event_id text)
)
UPDATE entitlement_answers a SET claimed_at = '-infinity'
FROM v
WHERE a.tenant_id = v.tenant_id AND a.event_id = v.event_id AND a.status IS NULL {_BY_KEY}
"""

_UNPREPARED = False
"""Batch statements are planned with their table's size at each call, never from a cached plan."""


class PostgresAnswerStore(AnswerStore):
    """Answers and claims in `entitlement_answers` (migrations 0004 and 0009). Rows answered
    before migration 0009 have no event columns: they are answers and nothing else."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._flags = PublishedFlags(pool)

    def get(self, tenant_id: int, event_id: str) -> Answer | None:
        with autocommitted(self._pool) as conn:
            row = conn.execute(
                "SELECT status, body::text, published FROM entitlement_answers "
                "WHERE tenant_id = %s AND event_id = %s AND status IS NOT NULL",
                (tenant_id, event_id),
            ).fetchone()
        if row is None:
            return None
        return Answer(int(row[0]), loads(row[1]), self._published(row[2], tenant_id, event_id))

    def _published(self, stored: object, tenant_id: int, event_id: str) -> bool:
        return bool(stored) or self._flags.pending(tenant_id, event_id)

    def claim(self, tenant_id: int, event_id: str, event: ConsumeEvent, lease_s: float) -> Claim:
        e = event
        with autocommitted(self._pool) as conn:
            new = {"t": tenant_id, "e": event_id, "customer": e.customer, "meter": e.meter}
            new |= {"amount": e.amount, "ms": e.event_ms}
            won, in_ledger = conn.execute(_CLAIM, new).fetchone() or (False, False)
            if won:
                return Claim(event, None, owner=True, in_ledger=bool(in_ledger))
            row = conn.execute(_READ, (lease_s, tenant_id, event_id)).fetchone()
            assert row is not None
            status, body, published, customer, meter, amount, event_ms, lapsed = row
            stored = event if event_ms is None else ConsumeEvent(customer, meter, amount, event_ms)
            if status is not None:
                done = self._published(published, tenant_id, event_id)
                return Claim(stored, Answer(int(status), loads(body), done), False)
            taken = lapsed and conn.execute(_TAKE_OVER, (tenant_id, event_id, lease_s)).fetchone()
            return Claim(stored, None, owner=bool(taken))

    def claim_many(self, asks: Sequence[IdEvent], lease_s: float) -> list[Claim]:
        """New ids claimed in one statement, in (tenant, event_id) order (concurrent batches
        then lock their rows in the same order); ids claimed before are read one by one."""
        order = sorted(asks, key=lambda ask: (ask[0], ask[1]))
        rows = [
            {"tenant_id": t, "event_id": event_id, "customer": e.customer, "meter": e.meter}
            | {"amount": e.amount, "event_ms": e.event_ms}
            for t, event_id, e in order
        ]
        with autocommitted(self._pool) as conn:
            found = {
                (t, e): (won, held)
                for t, e, won, held in conn.execute(
                    _CLAIM_MANY, (dumps(rows).decode(),), prepare=_UNPREPARED
                )
            }
        claims = []
        for tenant_id, event_id, event in asks:
            won, held = found[tenant_id, event_id]
            if won:
                claims.append(Claim(event, None, owner=True, in_ledger=bool(held)))
            else:
                claims.append(self.claim(tenant_id, event_id, event, lease_s))
        return claims

    def decide_many(self, answers: Sequence[tuple[int, str, Answer]]) -> list[Answer]:
        """Every answer stored in one statement; an id answered already is read back."""
        rows = [
            {"tenant_id": t, "event_id": event_id, "status": a.status, "body": a.body}
            | {"published": a.published}
            for t, event_id, a in answers
        ]
        with autocommitted(self._pool) as conn:
            done = conn.execute(_DECIDE_MANY, (dumps(rows).decode(),), prepare=_UNPREPARED)
            stored = {(int(t), str(e)) for t, e in done}
        return [
            answer if (t, event_id) in stored else self._stored(t, event_id)
            for t, event_id, answer in answers
        ]

    def _stored(self, tenant_id: int, event_id: str) -> Answer:
        stored = self.get(tenant_id, event_id)
        assert stored is not None, "decide is called only on claimed ids"
        return stored

    def abandon_many(self, ids: Sequence[tuple[int, str]]) -> None:
        rows = [{"tenant_id": t, "event_id": event_id} for t, event_id in ids]
        with autocommitted(self._pool) as conn:
            conn.execute(_ABANDON_MANY, (dumps(rows).decode(),), prepare=_UNPREPARED)

    def abandon(self, tenant_id: int, event_id: str) -> None:
        with autocommitted(self._pool) as conn:
            conn.execute(
                "UPDATE entitlement_answers SET claimed_at = '-infinity' "
                "WHERE tenant_id = %s AND event_id = %s AND status IS NULL",
                (tenant_id, event_id),
            )

    def decide(self, tenant_id: int, event_id: str, answer: Answer) -> Answer:
        a = answer
        with autocommitted(self._pool) as conn:
            args = (a.status, Jsonb(a.body, dumps=_dumps), a.published, tenant_id, event_id)
            if conn.execute(_DECIDE, args).fetchone() is not None:
                return answer
        return self._stored(tenant_id, event_id)

    def mark_published(self, tenant_id: int, event_id: str) -> None:
        """Written in a batch shortly after (`published.py`); read as set here at once."""
        self._flags.add(tenant_id, event_id)

    def close(self) -> None:
        """Write the published flags not written yet (before the pool closes)."""
        self._flags.close()

    def pending(
        self, tenant_id: int, customer: str, meter: str, start_ms: int, end_ms: int
    ) -> dict[str, Decimal]:
        args = (tenant_id, customer, meter, start_ms, end_ms)
        with self._pool.connection() as conn:
            return {str(e): Decimal(a) for e, a in conn.execute(_PENDING, args)}


def _dumps(doc: object) -> str:
    """An answer's JSON with its quantities exact (`meterline.values`)."""
    return dumps(doc).decode()
