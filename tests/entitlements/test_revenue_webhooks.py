"""Acceptance: the 14 hand-worked months of tests/reporter/test_revenue.py driven through the
Stripe emulator (subscriptions created, changed, canceled, a trial, on the emulator's clock),
delivered as signed webhooks to the entitlements API, kept as revenue events, and read back
through the reporter's revenue API: the same MRR, movements, ARR, NRR, GRR and cohorts as the
pure computation of the fixture, to the cent. Then `rebuild` from Stripe gives the same rows.

The emulator's clock only moves forward, so the history is shifted by whole months to start
after its present. It has no coupons: the two `forever` discounts become the price they leave
(49,000 a year 20% off = 39,200 a year; Basic 900 less 200 = 700 a month), which is the same
MRR to the cent; the `once` coupon (no MRR effect) is left out. C's past-due spell (still
counted) and its fall to `unpaid` (churn) are a cancellation on the day it went unpaid: paying
them through the emulator would close C's yearly period and move the clock a year. F's first,
`incomplete` state (no MRR) is left out.

Metered revenue too: G subscribes to a metered price only (5 per unit of a meter), sends 1,234
units, then 2,000, and its periods are closed three times (invoice.finalized and invoice.paid
webhooks); with B's trial-end invoice (a licensed line, 0 metered) these are the fixture's
`INVOICES`, and the API's `metered` per month must equal theirs to the cent, MRR unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import orjson
import pytest
import stripe
from fastapi.testclient import TestClient

from meterline.entitlements.postgres import PostgresCustomerRepository
from meterline.postgres import open_pool
from meterline.revenue.postgres import PostgresRevenueEventStore
from meterline.revenue.rebuild import rebuild_tenant
from meterline.stripe.revenue_history import (
    StripeInvoiceLines,
    invoice_history,
    subscription_history,
)
from reporter.api import create_app
from reporter.revenue import cohorts, metered_by_month, monthly, movements, retention
from reporter.revenue_report import shift
from tests.entitlements.conftest import WEBHOOK_SECRET, Api
from tests.reporter.support import World, reporter_for
from tests.reporter.test_revenue import HISTORY, INVOICES, METERED, MONTHS

pytestmark = pytest.mark.integration
Step = tuple[str, Callable[[], None]]


class Driver:
    """Drives the emulator as the fixture's history says, `months` months later."""

    def __init__(self, api: Api, months: int) -> None:
        self.api, self.months = api, months
        self.client = api.stripe.client()
        self.prices: dict[tuple[int, str], str] = {}
        self.subs: dict[str, Any] = {}
        self.stripe_customers: dict[str, str] = {}

    def at(self, day: str) -> float:
        """The shifted instant of a fixture day (YYYY-MM-DD) as a Unix time."""
        moved = shift(day[:7], self.months) + day[7:]
        return datetime.fromisoformat(moved).replace(tzinfo=UTC).timestamp()

    def go_to(self, day: str) -> None:
        control = self.api.stripe.control
        control.wait_for_deliveries(timeout=30)
        ahead = self.at(day) - control.now()
        assert ahead > 0, f"{day} is behind the emulator's clock"
        control.advance_clock(ahead)

    def price(self, amount: int, interval: str) -> str:
        key = (amount, interval)
        if key not in self.prices:
            self.prices[key] = self.client.v1.prices.create(
                {"unit_amount": amount, "currency": "usd", "recurring": {"interval": interval},
                 "product_data": {"name": f"{amount}/{interval}"}}
            ).id  # fmt: skip
        return self.prices[key]

    def customer(self, name: str) -> str:
        if name not in self.stripe_customers:
            self.stripe_customers[name] = self.api.customer(name)
        return self.stripe_customers[name]

    def create(
        self, name: str, sub: str, amount: int, interval: str, qty: int = 1, **more: Any
    ) -> None:
        item = {"price": self.price(amount, interval), "quantity": qty}
        params = {"customer": self.customer(name), "items": [item], **more}
        self.subs[sub] = self.client.v1.subscriptions.create(params)  # type: ignore[arg-type]

    def change(self, sub: str, amount: int, interval: str, qty: int) -> None:
        item = self.subs[sub]["items"]["data"][0]["id"]
        change = {"id": item, "price": self.price(amount, interval), "quantity": qty}
        self.client.v1.subscriptions.update(
            self.subs[sub].id, {"items": [change], "proration_behavior": "none"}
        )

    def cancel(self, sub: str) -> None:
        self.client.v1.subscriptions.cancel(self.subs[sub].id)

    def metered(self, name: str, sub: str) -> None:
        """A subscription to a metered price only: 5 per unit of meter `g_calls`."""
        meter = self.client.v1.billing.meters.create(
            {"display_name": "G calls", "event_name": "g_calls",
             "default_aggregation": {"formula": "sum"}}
        )  # fmt: skip
        price = self.client.v1.prices.create(
            {"unit_amount": 5, "currency": "usd", "product_data": {"name": "G calls"},
             "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id}}
        )  # fmt: skip
        item = {"price": price.id}
        params = {"customer": self.customer(name), "items": [item]}
        self.subs[sub] = self.client.v1.subscriptions.create(params)  # type: ignore[arg-type]

    def usage(self, name: str, units: int) -> None:
        payload = {"stripe_customer_id": self.customer(name), "value": str(units)}
        self.client.v1.billing.meter_events.create({"event_name": "g_calls", "payload": payload})

    def close(self, sub: str) -> None:
        self.api.stripe.control.close_period(self.subs[sub].id)


def script(d: Driver) -> list[Step]:
    """The fixture's history, in time order, as emulator calls."""
    return [
        ("2025-11-03", lambda: d.create("A", "a1", 900, "month")),
        ("2025-11-05", lambda: d.metered("G", "g1")),
        (
            "2025-11-20",
            lambda: d.create("B", "b1", 4900, "month", trial_end=int(d.at("2025-12-04"))),
        ),
        ("2025-11-25", lambda: d.usage("G", 1234)),
        ("2025-12-04", lambda: d.api.stripe.control.close_period(d.subs["b1"].id)),  # trial ends
        ("2025-12-05", lambda: d.close("g1")),  # 1,234 x 5 = 6,170
        ("2025-12-15", lambda: d.create("E", "e1", 300, "week")),
        ("2025-12-20", lambda: d.usage("G", 2000)),
        ("2026-01-05", lambda: d.close("g1")),  # 2,000 x 5 = 10,000
        ("2026-01-08", lambda: d.create("C", "c1", 39200, "year")),
        ("2026-02-05", lambda: d.close("g1")),  # no usage: 0
        ("2026-02-10", lambda: d.change("a1", 4900, "month", 1)),
        ("2026-03-01", lambda: d.create("D", "d1", 1000, "month", qty=5)),
        ("2026-04-10", lambda: d.create("F", "f1", 700, "month")),
        ("2026-05-15", lambda: d.change("b1", 900, "month", 1)),
        ("2026-06-20", lambda: d.cancel("c1")),
        ("2026-07-01", lambda: d.change("d1", 1000, "month", 8)),
        ("2026-09-01", lambda: d.cancel("a1")),
        ("2026-10-05", lambda: d.create("C", "c2", 4900, "month")),
        ("2026-10-20", lambda: d.change("b1", 4900, "month", 2)),
        ("2026-11-12", lambda: d.create("D", "d2", 900, "month")),
        ("2026-12-01", lambda: d.cancel("e1")),
        ("2026-12-02", lambda: d.cancel("d1")),
    ]


def months_ahead(now: float) -> int:
    """Whole months to move the fixture so that its first day is after `now`."""
    today = datetime.fromtimestamp(now, UTC)
    return (today.year - 2025) * 12 + today.month - 11 + 1


def test_fixture_through_webhooks_matches_the_computation(api: Api) -> None:
    api.stripe.control.add_webhook_endpoint(api.url + "/v1/stripe/webhook", secret=WEBHOOK_SECRET)
    d = Driver(api, months_ahead(api.stripe.control.now()))
    for day, action in script(d):
        d.go_to(day)
        action()
    api.stripe.control.wait_for_deliveries(timeout=30)
    months = [shift(m, d.months) for m in MONTHS]
    expected = [_moved(s, d.months) for s in HISTORY]
    with open_pool(api.env["METERLINE_DATABASE_URL"], max_size=4) as pool:
        reporter = reporter_for(World(pool, api.tenant_id, "", ""), d.client, api.clock)  # type: ignore[arg-type]
        with TestClient(create_app(reporter)) as http:
            http.headers["Authorization"] = f"Bearer {api.keys['read']}"
            _assert_api_matches(http, expected, months)
            _assert_metered_matches(http, d.months, months)
            store = PostgresRevenueEventStore(pool)
            webhooks, closed = store.states(api.tenant_id), store.invoices(api.tenant_id)
            # Stripe also invoices each subscription's first period at creation and every
            # licensed renewal: those bill no metered usage. The fixture names the invoices its
            # story is about; every one is kept, and only they bill metered usage.
            kept = [(i.customer, i.amount, i.status) for i in closed]
            named = [(i.customer, i.amount, i.status) for i in INVOICES]
            assert [x for x in kept if x[1]] == [x for x in named if x[1]]
            assert all(x in kept for x in named)
            history = lambda ids: subscription_history(d.client, ids)  # noqa: E731
            invoices = (partial(invoice_history, d.client), StripeInvoiceLines(d.client))
            rebuilt = rebuild_tenant(
                history, PostgresCustomerRepository(pool), store, api.tenant_id, invoices
            )
            assert [s for _, s in sorted(rebuilt, key=_order)] == webhooks  # the same event ids
            assert store.invoices(api.tenant_id) == closed
            _assert_api_matches(http, expected, months)
            _assert_metered_matches(http, d.months, months)


def _order(row: tuple[str, Any]) -> tuple[Any, str]:
    return row[1].at, row[0]


def _moved(state: Any, months: int) -> Any:
    day = state.at.strftime("%Y-%m-%d")
    at = datetime.fromisoformat(shift(day[:7], months) + day[7:]).replace(tzinfo=UTC)
    return replace(state, at=at)


def _assert_metered_matches(http: TestClient, moved: int, months: list[str]) -> None:
    rows = http.get(f"/v1/revenue/mrr?from={months[0]}&to={months[-1]}").json()["data"]
    expected = {shift(m, moved): v for (m, _), v in metered_by_month(INVOICES).items()}
    assert {r["month"]: r["metered"] for r in rows} == {m: expected.get(m, 0) for m in months}
    assert {r["month"]: r["metered"] for r in rows if r["metered"]} == {
        shift(m, moved): v for m, v in METERED.items()
    }


def _assert_api_matches(http: TestClient, expected: list[Any], months: list[str]) -> None:
    found = movements(expected)
    mrr = http.get(f"/v1/revenue/mrr?from={months[0]}&to={months[-1]}").json()["data"]
    assert [(r["month"], r["start_mrr"], r["new"], r["expansion"], r["contraction"], r["churn"],
             r["reactivation"], r["end_mrr"], r["arr"]) for r in mrr] == [
        (r.month, r.start_mrr, r.new, r.expansion, r.contraction, r.churn, r.reactivation,
         r.end_mrr, r.arr) for r in monthly(found, months)
    ]  # fmt: skip
    assert mrr[-1]["end_mrr"] == 16300 and mrr[-1]["arr"] == 195600
    for month in months:
        got = http.get(f"/v1/revenue/movements?month={month}").json()["data"]
        want = [m for m in found if m.at.strftime("%Y-%m") == month]
        assert [(m["customer"], m["kind"], m["amount"]) for m in got] == [
            (m.customer, str(m.kind), m.amount) for m in want
        ], month
    body = http.get(f"/v1/revenue/retention?month={months[-1]}").json()
    (usd,) = body["retention"]
    (pure,) = retention(found, months[-1])
    assert (usd["starting_mrr"], usd["ending_mrr"], usd["contraction"], usd["churn"]) == (
        pure.starting_mrr,
        pure.ending_mrr,
        pure.contraction,
        pure.churn,
    )
    assert (usd["nrr"], usd["grr"]) == ("1.380282", "0.690141")
    assert {(c["currency"], c["cohort"]): c["mrr"] for c in body["cohorts"]} == cohorts(
        found, months
    )


def test_an_unreadable_snapshot_is_refused_and_kept(api: Api) -> None:
    cus = api.customer("Z")
    obj = {
        "id": "sub_z",
        "object": "subscription",
        "customer": cus,
        "status": "active",
        "currency": "usd",
        "items": {"data": [{"price": {"recurring": {"interval": "fortnight"}}}]},
    }
    body = orjson.dumps(
        {
            "id": "evt_z",
            "object": "event",
            "created": int(time.time()),
            "type": "customer.subscription.updated",
            "data": {"object": obj},
        }
    )
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), WEBHOOK_SECRET)
    answer = httpx.post(
        api.url + "/v1/stripe/webhook",
        content=body,
        headers={"stripe-signature": header},
        timeout=30,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"].startswith("items.data[0].price.recurring.interval:")
    (kept,) = api.deps.subscription_sync.rejected()
    assert kept.event_id == "evt_z"
    with open_pool(api.env["METERLINE_DATABASE_URL"], max_size=1) as pool:
        assert PostgresRevenueEventStore(pool).states(api.tenant_id) == []


def test_the_rebuild_command_reads_stripe(api: Api) -> None:
    client = api.stripe.client()
    price = client.v1.prices.create(
        {"unit_amount": 2500, "currency": "usd", "recurring": {"interval": "month"},
         "product_data": {"name": "team"}}
    )  # fmt: skip
    sub = client.v1.subscriptions.create(
        {"customer": api.customer("R"), "items": [{"price": price.id, "quantity": 2}]}
    )
    client.v1.subscriptions.cancel(sub.id)  # no endpoint registered: no webhook was kept
    env = {**os.environ, **api.env}
    done = subprocess.run(
        [sys.executable, "-m", "meterline_ops.main", "revenue", "rebuild", "--tenant", "acme"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # closed invoices: the subscription's first invoice
    assert done.stdout.strip().endswith(
        "2 (2 from Stripe events, 0 rebuilt from subscriptions); closed invoices: 1"
    )
    with open_pool(api.env["METERLINE_DATABASE_URL"], max_size=1) as pool:
        states = PostgresRevenueEventStore(pool).states(api.tenant_id)
    assert [(s.customer, s.status, s.items[0].quantity) for s in states] == [
        ("R", "active", 2),
        ("R", "canceled", 2),
    ]
    unknown = subprocess.run(
        [sys.executable, "-m", "meterline_ops.main", "revenue", "rebuild", "--tenant", "nobody"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert unknown.returncode == 2 and "nobody" in unknown.stderr
