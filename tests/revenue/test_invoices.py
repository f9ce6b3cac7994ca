"""Closed Stripe invoices read as their metered part, and the listener keeping them: which lines
count, discounts, drafts, either line shape, a status that never goes back, bad fields named."""

from __future__ import annotations

from typing import Any

import pytest

from meterline.entitlements.repository import MemoryCustomerRepository
from meterline.revenue import MemoryRevenueEventStore, RevenueListener
from meterline.revenue.invoices import BadInvoice, metered_invoice
from meterline.revenue.rebuild import rebuilt_invoices
from meterline.stripe.revenue_history import price_id
from meterline.stripe.webhook_events import StripeEvent

T0 = 1_767_225_600  # 2026-01-01
METERED = {"price_metered"}


class KnownPrices:
    """The memory twin of `StripeInvoiceLines`: the object's lines, prices known by id."""

    def lines(self, invoice: dict[str, Any]) -> list[dict[str, Any]]:
        return list(invoice["lines"]["data"])

    def is_metered(self, line: dict[str, Any]) -> bool:
        return price_id(line) in METERED


def line(amount: int, price: str = "price_metered", **more: Any) -> dict[str, Any]:
    return {"amount": amount, "pricing": {"price_details": {"price": price}}, **more}


def inv(*lines: dict[str, Any], status: str = "paid", **more: Any) -> dict[str, Any]:
    return {"id": "in_1", "customer": "cus_1", "status": status, "currency": "USD",
            "created": T0, "status_transitions": {"finalized_at": T0 + 60},
            "lines": {"data": list(lines), "has_more": False}, **more}  # fmt: skip


def test_only_metered_lines_count_less_their_discounts() -> None:
    obj = inv(
        line(6170),
        line(4900, "price_licensed"),  # the coming month of a licensed plan: not metered
        line(1000, discount_amounts=[{"amount": 150}, {"amount": 50}]),
    )
    found = metered_invoice(obj, "acme-1", KnownPrices())
    assert found is not None
    assert (found.amount, found.currency, found.status) == (6170 + 1000 - 200, "usd", "paid")
    assert found.at.timestamp() == T0 + 60  # when it was finalized, not created


def test_a_line_of_the_older_api_carries_its_price() -> None:
    old = {"amount": 500, "price": {"id": "price_metered", "recurring": {"usage_type": "metered"}}}
    found = metered_invoice(inv(old), "acme-1", KnownPrices())
    assert found is not None and found.amount == 500
    assert price_id({"pricing": {"price_details": {"price": {"id": "price_x"}}}}) == "price_x"
    assert price_id({}) is None


def test_a_draft_is_not_closed_and_finalized_at_falls_back_to_created() -> None:
    assert metered_invoice(inv(line(1), status="draft"), "c", KnownPrices()) is None
    found = metered_invoice(inv(line(1), status_transitions={}), "c", KnownPrices())
    assert found is not None and found.at.timestamp() == T0


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (inv(line(1), status=None), "status"),
        (inv(line("12")), "lines.data[0].amount"),
        (inv(line(1, discount_amounts="x")), "lines.data[0].discount_amounts"),
        (inv(line(1), created=None, status_transitions=None), "created"),
        (inv(line(1), currency=""), "currency"),
    ],
)
def test_a_bad_field_is_named(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(BadInvoice) as caught:
        metered_invoice(obj, "c", KnownPrices())
    assert str(caught.value.message).startswith(f"{field}:")


def event(id_: str, obj: Any, type_: str) -> StripeEvent:
    return StripeEvent(id_, type_, T0, obj, obj.get("id"))


@pytest.fixture
def heard() -> tuple[RevenueListener, MemoryRevenueEventStore]:
    customers = MemoryCustomerRepository()
    customers.create(7, "acme-1", None, None)
    customers.set_stripe_id(7, "acme-1", "cus_1")
    store = MemoryRevenueEventStore()
    return RevenueListener(customers, store, KnownPrices()), store


def test_the_listener_keeps_an_invoice_once_in_any_order(
    heard: tuple[RevenueListener, MemoryRevenueEventStore],
) -> None:
    hear, store = heard
    assert hear.on_event(event("evt_2", inv(line(6170)), "invoice.paid"))
    assert not hear.on_event(event("evt_1", inv(line(6170), status="open"), "invoice.finalized"))
    assert not hear.on_event(event("evt_2", inv(line(6170)), "invoice.paid"))  # redelivered
    (kept,) = store.invoices(7)
    assert (kept.customer, kept.invoice, kept.amount, kept.status) == (
        "acme-1",
        "in_1",
        6170,
        "paid",
    )
    assert store.states(7) == []  # never a subscription state: never in MRR


def test_the_listener_ignores_drafts_strangers_and_other_types(
    heard: tuple[RevenueListener, MemoryRevenueEventStore],
) -> None:
    hear, store = heard
    assert not hear.on_event(event("e1", inv(line(1), status="draft"), "invoice.created"))
    assert not hear.on_event(event("e2", inv(line(1), customer="cus_x"), "invoice.paid"))
    assert not hear.on_event(event("e3", inv(line(1)), "invoice.payment_failed"))
    assert store.invoices(7) == []
    assert hear.on_event(event("e4", inv(line(9), status="void"), "invoice.voided"))
    assert store.invoices(7)[0].billed == 0


def test_the_rebuild_reads_the_closed_invoices_of_known_customers() -> None:
    listed = [inv(line(10)), inv(line(20), id="in_2", status="draft"),
              inv(line(30), id="in_3", customer="cus_x")]  # fmt: skip
    found = rebuilt_invoices(lambda _ids: listed, KnownPrices(), {"cus_1": "acme-1"})
    assert [(i.invoice, i.customer, i.amount) for i in found] == [("in_1", "acme-1", 10)]
