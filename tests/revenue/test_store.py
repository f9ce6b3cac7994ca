"""One contract, two stores: the memory twin and Postgres (`revenue_events`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from meterline.postgres import open_pool
from meterline.revenue import Discount, Item, MemoryRevenueEventStore, SubscriptionState
from meterline.revenue.model import MeteredInvoice
from meterline.revenue.postgres import PostgresRevenueEventStore
from meterline.revenue.store import RevenueEventStore
from meterline.tenants import PostgresTenantRepository


def state(day: int, sub: str = "s1", status: str = "active", **extra: object) -> SubscriptionState:
    at = datetime(2026, 3, day, tzinfo=UTC)
    items = (Item(900, 2, "month"), Item(49000, 1, "year", 1))
    return SubscriptionState(at, "cust", sub, status, "usd", items, **extra)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[RevenueEventStore, int, int]]:
    if request.param == "memory":
        yield MemoryRevenueEventStore(), 1, 2
        return
    conninfo = request.getfixturevalue("pg_conninfo")
    with open_pool(conninfo, max_size=2) as pool:
        tenants = PostgresTenantRepository(pool)
        one, two = tenants.create_tenant("one").id, tenants.create_tenant("two").id
        yield PostgresRevenueEventStore(pool), one, two


def test_a_state_round_trips_with_its_discount(store: tuple[RevenueEventStore, int, int]) -> None:
    events, tenant, _ = store
    kept = state(2, discount=Discount("forever", Decimal("12.5"), None))
    assert events.add(tenant, "evt_1", kept)
    assert events.states(tenant) == [kept]


def test_an_event_id_is_kept_once(store: tuple[RevenueEventStore, int, int]) -> None:
    events, tenant, _ = store
    assert events.add(tenant, "evt_1", state(2))
    assert not events.add(tenant, "evt_1", state(9, status="canceled"))
    assert events.states(tenant) == [state(2)]


def test_states_come_in_time_order_per_tenant(store: tuple[RevenueEventStore, int, int]) -> None:
    events, tenant, other = store
    events.add(tenant, "evt_b", state(5, status="canceled"))
    events.add(tenant, "evt_a", state(1))
    events.add(other, "evt_c", state(3, sub="s9"))
    assert [s.at.day for s in events.states(tenant)] == [1, 5]
    assert [s.subscription for s in events.states(other)] == ["s9"]


def test_replace_swaps_one_tenants_states(store: tuple[RevenueEventStore, int, int]) -> None:
    events, tenant, other = store
    events.add(tenant, "evt_a", state(1))
    events.add(other, "evt_c", state(3, sub="s9"))
    events.replace(tenant, [("rebuild:s1:start", state(4, discount=Discount("once")))])
    assert events.states(tenant) == [state(4, discount=Discount("once"))]
    assert len(events.states(other)) == 1


def test_states_of_one_second_keep_the_order_they_were_added(
    store: tuple[RevenueEventStore, int, int],
) -> None:
    events, tenant, _ = store
    events.add(tenant, "evt_z", state(2))  # created, then updated within the same second
    events.add(tenant, "evt_a", state(2, status="canceled"))
    assert [s.status for s in events.states(tenant)] == ["active", "canceled"]


def invoice(
    status: str = "open", amount: int = 6170, day: int = 5, number: str = "in_1"
) -> MeteredInvoice:
    at = datetime(2026, 3, day, tzinfo=UTC)
    return MeteredInvoice(at, "cust", number, "usd", amount, status)


def test_an_invoice_is_kept_once_and_its_status_only_moves_on(
    store: tuple[RevenueEventStore, int, int],
) -> None:
    events, tenant, other = store
    assert events.add_invoice(tenant, invoice("open"))
    assert not events.add_invoice(tenant, invoice("open"))  # invoice.finalized redelivered
    assert events.add_invoice(tenant, invoice("paid"))
    assert not events.add_invoice(tenant, invoice("open"))  # a late finalized: still paid
    assert events.invoices(tenant) == [invoice("paid")]
    assert events.invoices(other) == []


def test_a_voided_invoice_bills_nothing(store: tuple[RevenueEventStore, int, int]) -> None:
    events, tenant, _ = store
    events.add_invoice(tenant, invoice("open"))
    assert events.add_invoice(tenant, invoice("void"))
    (kept,) = events.invoices(tenant)
    assert (kept.status, kept.amount, kept.billed) == ("void", 6170, 0)


def test_invoices_in_the_order_they_closed_and_replaced_with_the_states(
    store: tuple[RevenueEventStore, int, int],
) -> None:
    events, tenant, _ = store
    events.add_invoice(tenant, invoice(day=9, number="in_b"))
    events.add_invoice(tenant, invoice(day=2, number="in_a"))
    assert [i.invoice for i in events.invoices(tenant)] == ["in_a", "in_b"]
    events.replace(tenant, [("evt_a", state(1))])  # None: invoices left alone
    assert len(events.invoices(tenant)) == 2
    events.replace(tenant, [("evt_a", state(1))], [invoice("paid", 100, 3, "in_c")])
    assert events.invoices(tenant) == [invoice("paid", 100, 3, "in_c")]
