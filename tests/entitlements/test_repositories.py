"""One contract suite for the memory and Postgres repositories."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterline.entitlements import (
    MemoryAnswerStore,
    MemoryCustomerRepository,
    MemoryGrantRepository,
    MemorySubscriptionRepository,
    NewGrant,
    PostgresAnswerStore,
    PostgresCustomerRepository,
    PostgresGrantRepository,
    PostgresSubscriptionRepository,
    Subscription,
)
from meterline.entitlements.repository import Answer, Claim, ConsumeEvent
from meterline.errors import Conflict, NotFound, ValidationFailed
from meterline.postgres import open_pool
from meterline.tenants import PostgresTenantRepository


@pytest.fixture(params=["memory", "postgres"])
def repos(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.param == "memory":
        customers = MemoryCustomerRepository()
        yield {
            "tenant": 1,
            "customers": customers,
            "subs": MemorySubscriptionRepository(),
            "grants": MemoryGrantRepository(customers),
            "answers": MemoryAnswerStore(),
        }
        return
    conninfo = request.getfixturevalue("pg_conninfo")
    with open_pool(conninfo, max_size=2) as pool:
        tenant = PostgresTenantRepository(pool).create_tenant("acme").id
        yield {
            "tenant": tenant,
            "customers": PostgresCustomerRepository(pool),
            "subs": PostgresSubscriptionRepository(pool),
            "grants": PostgresGrantRepository(pool),
            "answers": PostgresAnswerStore(pool),
        }


def test_customers(repos: dict[str, Any]) -> None:
    t, customers = repos["tenant"], repos["customers"]
    customers.create(t, "b", "Bee", "b@example.com")
    customers.create(t, "a", None, None)
    with pytest.raises(Conflict):
        customers.create(t, "a", None, None)
    assert [c.id for c in customers.list(t)] == ["a", "b"]
    assert [c.id for c in customers.list(t, after="a")] == ["b"]
    customers.set_stripe_id(t, "b", "cus_1")
    assert customers.by_stripe_id("cus_1").id == "b"
    assert customers.get(t, "zz") is None
    assert customers.ensure(t, "c").id == "c"
    with pytest.raises(NotFound):
        customers.set_stripe_id(t, "nobody", "cus_2")


def test_subscriptions(repos: dict[str, Any]) -> None:
    t, subs = repos["tenant"], repos["subs"]
    repos["customers"].create(t, "a", None, None)
    start = datetime(2026, 1, 31, tzinfo=UTC)
    sub = Subscription(
        t,
        "a",
        "power",
        "past_due",
        "stripe",
        "sub_1",
        start,
        start + timedelta(days=28),
        start,
        False,
        17,
    )
    subs.put(sub)
    assert subs.get(t, "a") == sub
    subs.put(Subscription(t, "a", "basic", source="lifetime"))
    assert subs.get(t, "a").plan == "basic"
    subs.delete(t, "a")
    assert subs.get(t, "a") is None


def test_grants(repos: dict[str, Any]) -> None:
    t, grants = repos["tenant"], repos["grants"]
    repos["customers"].create(t, "a", None, None)
    g = grants.add(t, NewGrant("a", "api_calls", "credit", 25.5, note="promo"))
    o = grants.add(t, NewGrant("a", "api_calls", "override", None))
    assert [x.id for x in grants.list(t, "a")] == [g.id, o.id]
    assert grants.list(t, "a")[0].amount == 25.5
    assert grants.void(t, g.id).voided_at is not None
    assert [x.id for x in grants.list(t, "a")] == [o.id]
    assert len(grants.list(t, "a", include_voided=True)) == 2
    with pytest.raises(ValidationFailed):
        grants.add(t, NewGrant("a", "api_calls", "credit", None))
    with pytest.raises(NotFound):
        grants.add(t, NewGrant("nobody", "api_calls", "credit", 1))
    with pytest.raises(NotFound):
        grants.void(t, 999_999)


def test_answers_first_wins(repos: dict[str, Any]) -> None:
    t, answers = repos["tenant"], repos["answers"]
    event = ConsumeEvent("c", "api_calls", 2.0, 1_000)
    assert answers.get(t, "e1") is None
    assert answers.claim(t, "e1", event, 30.0) == Claim(event, None, owner=True)
    other = ConsumeEvent("c", "api_calls", 9.0, 2_000)
    assert answers.claim(t, "e1", other, 30.0) == Claim(event, None, owner=False)
    assert answers.get(t, "e1") is None
    granted = Answer(200, {"granted": True}, published=False)
    assert answers.decide(t, "e1", granted) == granted
    assert answers.decide(t, "e1", Answer(403, {"granted": False})) == granted
    assert answers.claim(t, "e1", other, 30.0) == Claim(event, granted, owner=False)
    answers.mark_published(t, "e1")
    assert answers.get(t, "e1") == Answer(200, {"granted": True}, published=True)


def test_a_lapsed_claim_is_taken_over_with_the_first_event(repos: dict[str, Any]) -> None:
    t, answers = repos["tenant"], repos["answers"]
    event = ConsumeEvent("c", "api_calls", 2.0, 1_000)
    assert answers.claim(t, "e2", event, 0.0).owner
    time.sleep(0.01)
    later = ConsumeEvent("c", "api_calls", 5.0, 9_000)
    assert answers.claim(t, "e2", later, 0.001) == Claim(event, None, owner=True)


def test_pending_is_the_granted_amounts_of_the_period(repos: dict[str, Any]) -> None:
    t, answers = repos["tenant"], repos["answers"]
    for event_id, amount, at, status in [
        ("p1", 2.0, 1_000, 200),
        ("p2", 3.0, 1_500, 200),
        ("p3", 4.0, 1_500, 403),
        ("p4", 5.0, 5_000, 200),
    ]:
        assert answers.claim(t, event_id, ConsumeEvent("c", "m", amount, at), 30.0).owner
        answers.decide(t, event_id, Answer(status, {}))
    assert answers.claim(t, "p5", ConsumeEvent("c", "m", 7.0, 1_000), 30.0).owner
    assert answers.pending(t, "c", "m", 1_000, 5_000) == {"p1": 2.0, "p2": 3.0}
    assert answers.pending(t, "c", "other", 0, 10_000) == {}


def test_an_abandoned_claim_is_taken_over_at_once(repos: dict[str, Any]) -> None:
    t, answers = repos["tenant"], repos["answers"]
    event = ConsumeEvent("c", "api_calls", 2.0, 1_000)
    assert answers.claim(t, "e3", event, 30.0).owner
    answers.abandon(t, "e3")
    later = ConsumeEvent("c", "api_calls", 5.0, 9_000)
    assert answers.claim(t, "e3", later, 30.0) == Claim(event, None, owner=True)
    assert answers.decide(t, "e3", Answer(403, {})) == Answer(403, {})
    answers.abandon(t, "e3")
    assert answers.claim(t, "e3", later, 30.0) == Claim(event, Answer(403, {}), owner=False)


def test_a_grant_whose_id_is_counted_on_any_day_is_not_pending(pg_conninfo: str) -> None:
    with open_pool(pg_conninfo, max_size=2) as pool:
        t = PostgresTenantRepository(pool).create_tenant("acme").id
        answers = PostgresAnswerStore(pool)
        for event_id in ("p1", "p2"):
            assert answers.claim(t, event_id, ConsumeEvent("c", "m", 2.0, 1_000), 30.0).owner
            answers.decide(t, event_id, Answer(200, {}))
        with pool.connection() as conn:  # counted, its ledger row on a later day than its time
            conn.execute(
                "INSERT INTO usage_event_ids (tenant_id, event_id, day) VALUES (%s, 'p1', %s)",
                (t, datetime(1970, 1, 2, tzinfo=UTC).date()),
            )
        assert answers.pending(t, "c", "m", 0, 5_000) == {"p2": 2.0}


def _stored_published(pool: Any, tenant: int, event_id: str) -> bool:
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT published FROM entitlement_answers WHERE tenant_id = %s AND event_id = %s",
            (tenant, event_id),
        ).fetchone()
    return bool(row[0])


def test_published_flags_reach_postgres_in_a_batch_and_at_close(pg_conninfo: str) -> None:
    with open_pool(pg_conninfo, max_size=2) as pool:
        t = PostgresTenantRepository(pool).create_tenant("acme").id
        answers = PostgresAnswerStore(pool)
        for event_id in ("f1", "f2"):
            answers.claim(t, event_id, ConsumeEvent("c", "m", 1.0, 1_000), 30.0)
            answers.decide(t, event_id, Answer(200, {}, published=False))
        answers.mark_published(t, "f1")
        deadline = time.monotonic() + 5
        while not _stored_published(pool, t, "f1") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _stored_published(pool, t, "f1")
        assert not _stored_published(pool, t, "f2")
        answers.mark_published(t, "f2")
        answers.close()
        assert _stored_published(pool, t, "f2")
        assert PostgresAnswerStore(pool).get(t, "f2") == Answer(200, {}, published=True)


def test_a_claim_reads_whether_the_ledger_holds_its_id(pg_conninfo: str) -> None:
    with open_pool(pg_conninfo, max_size=2) as pool:
        t = PostgresTenantRepository(pool).create_tenant("acme").id
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO usage_event_ids (tenant_id, event_id, day) VALUES (%s, 'l1', %s)",
                (t, datetime(2026, 1, 2, tzinfo=UTC).date()),
            )
        answers = PostgresAnswerStore(pool)
        event = ConsumeEvent("c", "m", 1.0, 1_000)
        assert answers.claim(t, "l1", event, 30.0).in_ledger is True
        assert answers.claim(t, "l2", event, 30.0).in_ledger is False


def test_a_batch_claims_decides_and_abandons_each_id_as_one_by_one(repos: dict[str, Any]) -> None:
    t, answers = repos["tenant"], repos["answers"]
    first, other = ConsumeEvent("c", "m", Decimal("0.1"), 1_000), ConsumeEvent("d", "m", 3, 2_000)
    assert answers.claim(t, "b-held", first, 30.0).owner  # another caller's live claim
    answers.claim(t, "b-done", first, 30.0)
    answers.decide(t, "b-done", Answer(403, {"granted": False}))
    asks = [(t, "b-new", other), (t, "b-held", other), (t, "b-done", other), (t, "b-2", first)]
    claims = answers.claim_many(asks, 30.0)
    assert claims == [
        Claim(other, None, owner=True),
        Claim(first, None, owner=False),
        Claim(first, Answer(403, {"granted": False}), owner=False),
        Claim(first, None, owner=True),
    ]
    granted = Answer(200, {"granted": True, "used": 2.5}, published=False)
    stored = answers.decide_many([(t, "b-new", granted), (t, "b-done", Answer(200, {}))])
    assert stored == [granted, Answer(403, {"granted": False})]
    assert answers.get(t, "b-new") == granted
    assert answers.pending(t, "d", "m", 0, 5_000) == {"b-new": 3}
    answers.abandon_many([(t, "b-2"), (t, "b-new")])
    later = ConsumeEvent("c", "m", 9, 9_000)
    assert answers.claim(t, "b-2", later, 30.0) == Claim(first, None, owner=True)
    assert answers.claim(t, "b-new", later, 30.0) == Claim(other, granted, owner=False)


def test_plan_data_of_many_customers_is_read_as_one_by_one(repos: dict[str, Any]) -> None:
    t, subs, grants = repos["tenant"], repos["subs"], repos["grants"]
    for c in ("a", "b", "c"):
        repos["customers"].create(t, c, None, None)
    subs.put(Subscription(t, "a", "basic", source="lifetime"))
    kept = grants.add(t, NewGrant("b", "api_calls", "credit", 5))
    grants.void(t, grants.add(t, NewGrant("b", "api_calls", "credit", 7)).id)
    assert subs.get_many(t, ["a", "b", "nobody"]) == {"a": subs.get(t, "a")}
    assert grants.list_many(t, ["a", "b"]) == {"a": [], "b": [kept]}


def _ledger_scans(conn: Any) -> tuple[int, int]:
    """(whole-table scans, index scans) of `usage_event_ids` so far, this session's included."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")  # the flush happens at the end of a transaction
    row = conn.execute(
        "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables "
        "WHERE relname = 'usage_event_ids'"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_batch_claim_probes_the_ledger_by_id_however_many_ids_it_holds(
    pg_conninfo: str,
) -> None:
    """The claim reads whether the ledger holds each of its ids by index, never by reading
    every counted id: a table of 30k ids was read whole by every claim (the planner takes a
    batch for 100 rows and preferred hashing the table), so a consume cost more as the ledger
    grew."""
    with open_pool(pg_conninfo, max_size=1) as pool:
        t = PostgresTenantRepository(pool).create_tenant("acme").id
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO usage_event_ids (tenant_id, event_id, day) "
                "SELECT %s, 'l' || g, current_date FROM generate_series(1, 30000) g",
                (t,),
            )
            conn.commit()
            conn.execute("ANALYZE usage_event_ids")
            conn.commit()
        answers = PostgresAnswerStore(pool)
        event = ConsumeEvent("c", "m", 1, 1_000)
        with pool.connection() as conn:
            conn.autocommit = True
            before = _ledger_scans(conn)
            conn.autocommit = False
        for n in range(12):  # past the count after which statements are prepared
            asks = [(t, f"l{n + 1}" if i == 0 else f"n{n}-{i}", event) for i in range(20)]
            claims = answers.claim_many(asks, 30.0)
            assert [c.in_ledger for c in claims] == [True] + [False] * 19
        with pool.connection() as conn:
            conn.autocommit = True
            seq, idx = (a - b for a, b in zip(_ledger_scans(conn), before, strict=True))
            conn.autocommit = False
        assert (seq, idx >= 12) == (0, True), (seq, idx)
