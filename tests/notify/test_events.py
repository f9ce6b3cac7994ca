"""The first events, written into the outbox in the transaction of the change they announce:
reconciliation alerts raised and resolved, dead letters, subscription changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import psycopg
import pytest

from aggregator.batch import Batch
from aggregator.postgres.ledger import LedgerWriter, prepare
from meterline.catalog.model import Aggregation
from meterline.entitlements.model import Subscription
from meterline.entitlements.postgres import (
    PostgresCustomerRepository,
    PostgresSubscriptionRepository,
)
from meterline.kafka.dlq import DeadLetter
from reporter.alerts import Discrepancy
from reporter.postgres.alerts import PostgresReconciliationStore
from tests.notify.support import make_setup

pytestmark = pytest.mark.integration
HOUR = datetime(2026, 11, 20, 10, tzinfo=UTC)


@pytest.fixture
def setup(pg_conninfo):
    s = make_setup(pg_conninfo)
    s.endpoint("http://127.0.0.1:9/hook")
    yield s
    s.pool.close()


def messages(setup) -> list[tuple[str, str, dict]]:
    """(type, ordering key, body) of every message, oldest first, each with its deliveries."""
    with setup.pool.connection() as conn:
        rows = conn.execute(
            "SELECT m.event_type, m.ordering_key, m.body, count(d.id) FROM webhook_messages m "
            "LEFT JOIN webhook_deliveries d ON d.message_id = m.id GROUP BY m.id ORDER BY m.id"
        ).fetchall()
    assert all(n == 1 for *_, n in rows)  # fanned out to the one endpoint
    return [(t, k, orjson.loads(b)) for t, k, b, _ in rows]


def discrepancy(customer: str = "cust_a", difference: int = -30) -> Discrepancy:
    return Discrepancy("missing_in_stripe", customer, "api_calls", HOUR, HOUR + timedelta(hours=1),
                       Decimal(30), Decimal(30), Decimal(0), Decimal(difference),
                       Decimal("0.5"), "usd")  # fmt: skip


def test_an_alert_raised_once_and_resolved_by_finance(setup):
    store = PostgresReconciliationStore(setup.pool)
    opened, _ = store.record(setup.tenant_id, None, [discrepancy()])
    store.record(setup.tenant_id, None, [discrepancy()])  # found again: refreshed, not new
    store.transition(setup.tenant_id, opened[0], "resolved", "fixed by hand")
    found = messages(setup)
    assert [(t, k) for t, k, _ in found] == [
        ("reconciliation.alert_raised", "cust_a"),
        ("reconciliation.alert_resolved", "cust_a"),
    ]
    raised, resolved = found[0][2], found[1][2]
    assert raised["type"] == "reconciliation.alert_raised"
    assert raised["data"]["alert_id"] == opened[0] and raised["data"]["money_minor"] == 15
    assert raised["data"]["window_start"] == "2026-11-20T10:00:00Z"
    assert resolved["data"]["resolved_by"] == "finance"
    assert resolved["data"]["note"] == "fixed by hand"


def test_an_alert_a_later_run_no_longer_finds_is_announced_resolved(setup):
    store = PostgresReconciliationStore(setup.pool)
    run = store.start_run(setup.tenant_id, (HOUR, HOUR + timedelta(days=1)), "manual")
    store.record(setup.tenant_id, run, [discrepancy("cust_a"), discrepancy("cust_b")])
    assert store.clear(setup.tenant_id, run, (HOUR, HOUR + timedelta(days=1)), set()) == 2
    kinds = [(t, k, b["data"].get("resolved_by")) for t, k, b in messages(setup)]
    assert kinds[2:] == [
        ("reconciliation.alert_resolved", "cust_a", "reconciliation"),
        ("reconciliation.alert_resolved", "cust_b", "reconciliation"),
    ]


def test_a_failed_transition_announces_nothing(setup):
    store = PostgresReconciliationStore(setup.pool)
    opened, _ = store.record(setup.tenant_id, None, [discrepancy()])
    store.transition(setup.tenant_id, opened[0], "resolved", None)
    with pytest.raises(Exception, match="already resolved"):
        store.transition(setup.tenant_id, opened[0], "resolved", None)
    assert len(messages(setup)) == 2


def test_a_dead_letter_is_announced_in_the_batch_transaction(setup, pg_conninfo):
    writer = LedgerWriter(lambda: psycopg.connect(pg_conninfo), "aggregator", "usage")
    writer.incarnation = "inc-1"
    letters = [
        DeadLetter(f"{setup.tenant_id}/cust_a".encode(), b'{"id": "evt-1", "value": "x"}',
                   "value: not a number", "usage", 0, 41),
        DeadLetter(b"not-a-tenant", b"{", "not JSON", "usage", 0, 42),  # nobody to tell
        DeadLetter(b"999/cust_b", b"{", "not JSON", "usage", 0, 43),  # no such tenant
    ]  # fmt: skip
    batch = Batch(poison=letters, ends={0: 44})
    writer.commit(prepare(batch), {0: None}, lambda *_: Aggregation.SUM)
    found = messages(setup)
    assert [(t, k) for t, k, _ in found] == [("dlq.event_dead_lettered", "cust_a")]
    data = found[0][2]["data"]
    assert data == {"reason": "value: not a number", "topic": "usage", "partition": 0,
                    "offset": 41, "customer": "cust_a", "event_id": "evt-1"}  # fmt: skip


def test_a_subscription_change_is_announced_once(setup):
    PostgresCustomerRepository(setup.pool).create(setup.tenant_id, "cust_a", None, None)
    subs = PostgresSubscriptionRepository(setup.pool)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    basic = Subscription(setup.tenant_id, "cust_a", "basic", "active", "stripe", "sub_1", start,
                         start + timedelta(days=30), stripe_event_created=1)  # fmt: skip
    subs.put(basic)
    subs.put(Subscription(**{**_fields(basic), "stripe_event_created": 2}))  # no real change
    power = Subscription(**{**_fields(basic), "plan": "power"})
    subs.put(power)
    subs.delete(setup.tenant_id, "cust_a")
    found = [b["data"] for t, k, b in messages(setup) if t == "subscription.changed"]
    assert [(d["previous"] or {}).get("plan") for d in found] == [None, "basic", "power"]
    assert [(d["current"] or {}).get("plan") for d in found] == ["basic", "power", None]
    assert found[0]["current"]["current_period_end"] == "2026-12-01T00:00:00Z"


def _fields(sub: Subscription) -> dict:
    return {name: getattr(sub, name) for name in Subscription.__dataclass_fields__}
